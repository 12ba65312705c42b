// Package cpusteal measures the share of a machine's CPU time its
// hypervisor gave to other guests (the kernel's "steal" time).
//
// On a shared host a run during which the hypervisor took a fifth of the
// CPU time says more about the host than about the code measured, and it
// moves ratios as well as absolute figures: the ceilings a run compares
// with lose more to it than the process under test. Every benchmark figure
// therefore carries the steal of the time it was measured in.
package cpusteal

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// Reading is the machine's CPU time so far, all CPUs together, in clock
// ticks.
type Reading struct {
	total, steal uint64
	known        bool
}

// Read returns the machine's CPU times now, from the first line of
// /proc/stat; a reading that is not known where there is none.
func Read() Reading {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Reading{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	r, err := Parse(line)
	if err != nil {
		return Reading{}
	}
	return r
}

// Parse reads /proc/stat's aggregate line: "cpu" then user, nice, system,
// idle, iowait, irq, softirq and steal ticks (and guest time, which user
// and nice already include). Kernels before 2.6.11 have no steal field.
func Parse(line string) (Reading, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return Reading{}, fmt.Errorf("not /proc/stat's cpu line with a steal field: %q", line)
	}
	var r Reading
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return Reading{}, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
		}
		r.total += v
		if i == 7 {
			r.steal = v
		}
	}
	r.known = true
	return r, nil
}

// Known says whether the reading could be taken.
func (r Reading) Known() bool { return r.known }

// Percent is the share of the CPU time between from and to that the
// hypervisor gave to others, in percent to a tenth; nil when unknown.
func Percent(from, to Reading) *float64 {
	if !from.known || !to.known || to.total <= from.total || to.steal < from.steal {
		return nil
	}
	p := math.Round(1000*float64(to.steal-from.steal)/float64(to.total-from.total)) / 10
	return &p
}

// Since is the steal from start until now, as Percent says.
func Since(start Reading) *float64 { return Percent(start, Read()) }

// Report adds the steal since start to a benchmark's figures as
// "steal-%" (b is a *testing.B), when it is known.
func Report(b interface{ ReportMetric(float64, string) }, start Reading) {
	if p := Since(start); p != nil {
		b.ReportMetric(*p, "steal-%")
	}
}
