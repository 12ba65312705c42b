package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Tracing is OpenTelemetry trace export, read from OpenTelemetry's standard
// variables so an operator's usual settings work unchanged. An empty
// Endpoint means tracing is off: no spans, no trace ids, no traceparent
// headers. The exporter's transport settings (OTEL_EXPORTER_OTLP_HEADERS,
// _CERTIFICATE, _CLIENT_CERTIFICATE, _CLIENT_KEY, _COMPRESSION, _TIMEOUT and
// their _TRACES_ forms) and OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES are
// read by the OpenTelemetry SDK itself when tracing is on.
type Tracing struct {
	// Endpoint is the OTLP/HTTP traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// as is, or OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces".
	Endpoint string
	// Sampler is OTEL_TRACES_SAMPLER (default parentbased_always_on, the
	// specification's; "" means the default); SamplerArg the ratio of the traceidratio samplers
	// (OTEL_TRACES_SAMPLER_ARG, default 1).
	Sampler    string
	SamplerArg float64
}

// Enabled reports whether spans are recorded and exported.
func (t Tracing) Enabled() bool { return t.Endpoint != "" }

// Samplers are the values of OTEL_TRACES_SAMPLER TrackOps understands.
var Samplers = []string{"always_on", "always_off", "traceidratio",
	"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

func loadTracing(e *env) (Tracing, error) {
	t := Tracing{
		Sampler:    strings.ToLower(e.str("OTEL_TRACES_SAMPLER", "parentbased_always_on")),
		SamplerArg: e.float("OTEL_TRACES_SAMPLER_ARG", 1),
	}
	if strings.EqualFold(e.str("OTEL_SDK_DISABLED", ""), "true") {
		return t, nil
	}
	switch exp := strings.ToLower(e.str("OTEL_TRACES_EXPORTER", "otlp")); exp {
	case "none":
		return t, nil
	case "otlp":
	default:
		return t, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: TrackOps exports traces with otlp, or none", exp)
	}
	proto := e.str("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", e.str("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
	if proto != "http/protobuf" {
		return t, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: TrackOps exports OTLP over HTTP; use http/protobuf (port 4318 on a collector)", proto)
	}
	t.Endpoint = e.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	if t.Endpoint == "" {
		if base := e.str("OTEL_EXPORTER_OTLP_ENDPOINT", ""); base != "" {
			t.Endpoint = strings.TrimRight(base, "/") + "/v1/traces"
		}
	}
	return t, nil
}

func (t Tracing) validate() error {
	known := false
	for _, s := range Samplers {
		known = known || s == t.Sampler
	}
	if t.Sampler != "" && !known { // "" is the default sampler
		return fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want one of %s", t.Sampler, strings.Join(Samplers, ", "))
	}
	if t.SamplerArg < 0 || t.SamplerArg > 1 {
		return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%v: the sampling ratio is between 0 and 1", t.SamplerArg)
	}
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("OTLP traces endpoint %q: want an http:// or https:// URL such as http://collector:4318", t.Endpoint)
		}
	}
	return nil
}
