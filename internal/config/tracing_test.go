package config

import (
	"strings"
	"testing"
)

func TestTracingFromOTELVariables(t *testing.T) {
	tests := []struct {
		env      map[string]string
		endpoint string
		sampler  string
		ratio    float64
		err      string
	}{
		{env: map[string]string{}, sampler: "parentbased_always_on", ratio: 1},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, endpoint: "http://c:4318/v1/traces", sampler: "parentbased_always_on", ratio: 1},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t:443/x"}, endpoint: "https://t:443/x", sampler: "parentbased_always_on", ratio: 1},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, sampler: "parentbased_always_on", ratio: 1},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, sampler: "parentbased_always_on", ratio: 1},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.05"},
			endpoint: "http://c:4318/v1/traces", sampler: "parentbased_traceidratio", ratio: 0.05},
		{env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, err: "OTEL_TRACES_SAMPLER"},
		{env: map[string]string{"OTEL_TRACES_SAMPLER_ARG": "2"}, err: "OTEL_TRACES_SAMPLER_ARG"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, err: "http/protobuf"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"}, err: "http:// or https://"},
	}
	for _, tt := range tests {
		tt.env["TRACKOPS_LOG_FORMAT"] = "json"
		c, err := LoadFrom(envOf(tt.env))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: err %v, want one naming %s", tt.env, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tt.env, err)
			continue
		}
		if c.Tracing.Endpoint != tt.endpoint || c.Tracing.Sampler != tt.sampler || c.Tracing.SamplerArg != tt.ratio || c.Tracing.Enabled() != (tt.endpoint != "") {
			t.Errorf("%v: %+v, want endpoint %q sampler %s ratio %v", tt.env, c.Tracing, tt.endpoint, tt.sampler, tt.ratio)
		}
	}
}
