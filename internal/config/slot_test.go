package config

import (
	"strings"
	"testing"
)

func TestCDCSlotName(t *testing.T) {
	tests := []struct {
		name, value, want, wantErr string
	}{
		{"default is the seed's slot", "", "debezium_orders", ""},
		{"own slot for a second database", "trackops_eu_orders", "trackops_eu_orders", ""},
		{"upper case is not a slot name", "Orders", "", "TRACKOPS_CDC_SLOT_NAME"},
		{"too long", strings.Repeat("s", 64), "", "TRACKOPS_CDC_SLOT_NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := LoadFrom(envOf(map[string]string{"TRACKOPS_LOG_FORMAT": "json", "TRACKOPS_CDC_SLOT_NAME": tt.value}))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || c.CDC.SlotName != tt.want {
				t.Fatalf("slot %q, err %v; want %q", c.CDC.SlotName, err, tt.want)
			}
		})
	}
}
