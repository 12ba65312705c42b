package cpusteal

import (
	"runtime"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		line         string
		total, steal uint64
		wantErr      bool
	}{
		{name: "current kernel, guest time not counted twice", line: "cpu  50164 0 26101 132802 2615 0 5996 11994 7 3",
			total: 50164 + 26101 + 132802 + 2615 + 5996 + 11994, steal: 11994},
		{name: "no guest fields", line: "cpu 10 20 30 40 50 60 70 80", total: 360, steal: 80},
		{name: "kernel without a steal field", line: "cpu 10 20 30 40 50 60 70", wantErr: true},
		{name: "a single CPU's line", line: "cpu0 10 20 30 40 50 60 70 80", wantErr: true},
		{name: "not a number", line: "cpu 10 20 30 40 50 60 70 x", wantErr: true},
		{name: "empty", line: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.line)
			if tt.wantErr {
				if err == nil || got.known {
					t.Fatalf("Parse(%q) = %+v, %v; want an error", tt.line, got, err)
				}
				return
			}
			if err != nil || !got.known || got.total != tt.total || got.steal != tt.steal {
				t.Fatalf("Parse(%q) = %+v, %v; want total %d, steal %d", tt.line, got, err, tt.total, tt.steal)
			}
		})
	}
}

func TestPercent(t *testing.T) {
	t.Parallel()
	at := func(total, steal uint64) Reading { return Reading{total: total, steal: steal, known: true} }
	tests := []struct {
		name     string
		from, to Reading
		want     float64 // -1: unknown
	}{
		{name: "a fifth stolen", from: at(1000, 100), to: at(2000, 300), want: 20},
		{name: "rounded to a tenth", from: at(0, 0), to: at(3000, 1), want: 0},
		{name: "a third", from: at(0, 0), to: at(3000, 1000), want: 33.3},
		{name: "none", from: at(500, 7), to: at(900, 7), want: 0},
		{name: "no time passed", from: at(500, 7), to: at(500, 7), want: -1},
		{name: "counters reset", from: at(500, 70), to: at(900, 7), want: -1},
		{name: "start unknown", from: Reading{}, to: at(900, 7), want: -1},
		{name: "end unknown", from: at(500, 7), to: Reading{}, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Percent(tt.from, tt.to)
			switch {
			case tt.want < 0 && got != nil:
				t.Fatalf("Percent = %v; want unknown", *got)
			case tt.want >= 0 && (got == nil || *got != tt.want):
				t.Fatalf("Percent = %v; want %v", got, tt.want)
			}
		})
	}
}

// TestReadFromTheMachine reads the real /proc/stat: the steal over any
// stretch of time is known, even when the host took none.
func TestReadFromTheMachine(t *testing.T) {
	t.Parallel()
	start := Read()
	if !start.Known() {
		t.Fatal("no reading from /proc/stat: TrackOps' benchmarks run on Linux")
	}
	for i := 0; i < 1e6 && Read().total == start.total; i++ { // let the clock tick
		runtime.Gosched()
	}
	if p := Since(start); p == nil || *p < 0 || *p > 100 {
		t.Fatalf("steal since the start = %v; want a share between 0 and 100 %%", p)
	}
}
