package bench

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// cpuTimes is the machine's CPU time so far, all CPUs together, in clock
// ticks, from the first line of /proc/stat.
//
// On a virtual machine the hypervisor may run other guests on this guest's
// CPUs; the kernel counts that time as steal. A run during which the host
// took a fifth of the CPU time says more about the host than about
// TrackOps, so every figure carries the steal of the time it was measured
// in.
type cpuTimes struct {
	total, steal uint64
	known        bool
}

// readCPUTimes returns the machine's CPU times now; unknown where there is
// no /proc/stat.
func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	t, err := parseCPUTimes(line)
	if err != nil {
		return cpuTimes{}
	}
	return t
}

// parseCPUTimes reads /proc/stat's aggregate line: "cpu" then user, nice,
// system, idle, iowait, irq, softirq and steal ticks (and guest time, which
// user and nice already include). Kernels before 2.6.11 have no steal field.
func parseCPUTimes(line string) (cpuTimes, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("not /proc/stat's cpu line with a steal field: %q", line)
	}
	var t cpuTimes
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
		}
		t.total += v
		if i == 7 {
			t.steal = v
		}
	}
	t.known = true
	return t, nil
}

// stealPercent is the share of the CPU time between from and to that the
// hypervisor gave to others, in percent to a tenth; nil when unknown.
func stealPercent(from, to cpuTimes) *float64 {
	if !from.known || !to.known || to.total <= from.total || to.steal < from.steal {
		return nil
	}
	p := math.Round(1000*float64(to.steal-from.steal)/float64(to.total-from.total)) / 10
	return &p
}

// stealWarnAt is the steal from which a rendered run is flagged: beyond it
// the host, not the build, moves the absolute figures.
const stealWarnAt = 5.0
