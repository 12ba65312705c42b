package config

import (
	"fmt"
	"net/url"
	"slices"
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

func (t *Tracing) load(e *env) {
	t.Sampler = strings.ToLower(e.str("OTEL_TRACES_SAMPLER", "parentbased_always_on"))
	t.SamplerArg = e.float("OTEL_TRACES_SAMPLER_ARG", 1)
	if strings.EqualFold(e.str("OTEL_SDK_DISABLED", ""), "true") {
		return
	}
	switch exp := strings.ToLower(e.str("OTEL_TRACES_EXPORTER", "otlp")); exp {
	case "none":
		return
	case "otlp":
	default:
		e.bad("OTEL_TRACES_EXPORTER=%q: TrackOps exports traces with otlp, or none", exp)
		return
	}
	proto := e.str("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", e.str("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
	if proto != "http/protobuf" {
		e.bad("OTEL_EXPORTER_OTLP_PROTOCOL=%q: TrackOps exports OTLP over HTTP; use http/protobuf (port 4318 on a collector)", proto)
		return
	}
	t.Endpoint = e.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	if t.Endpoint == "" {
		if base := e.str("OTEL_EXPORTER_OTLP_ENDPOINT", ""); base != "" {
			t.Endpoint = strings.TrimRight(base, "/") + "/v1/traces"
		}
	}
}

func (t Tracing) validate() []error {
	var errs []error
	if t.Sampler != "" && !slices.Contains(Samplers, t.Sampler) { // "" is the default sampler
		errs = append(errs, fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want one of %s", t.Sampler, strings.Join(Samplers, ", ")))
	}
	if t.SamplerArg < 0 || t.SamplerArg > 1 {
		errs = append(errs, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%v: the sampling ratio is between 0 and 1", t.SamplerArg))
	}
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("OTLP traces endpoint %q: want an http:// or https:// URL such as http://collector:4318", t.Endpoint))
		}
	}
	return errs
}
