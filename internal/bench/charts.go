package bench

import (
	"bytes"
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Charts draws each sweep as two SVG charts, keyed by file name (under
// docs/bench/): <scenario>-latency.svg, latency percentiles from the
// scheduled time by offered rate, and <scenario>-cpu.svg, CPU per delivered
// event of TrackOps and of PostgreSQL by offered rate. Both axes are
// logarithmic: the rates step by factors, and latency grows by factors once
// a queue builds.
func Charts(res Results) (map[string][]byte, error) {
	out := map[string][]byte{}
	if res.Sweeps == nil {
		return out, nil
	}
	for _, sw := range res.Sweeps.Sweeps {
		if sw.Status != StatusOK || len(sw.Steps) == 0 {
			continue
		}
		lat, err := chart(sw.Scenario+": latency from scheduled time", "latency (ms)", sw.Steps, []series{
			{"p50", func(s SweepStep) float64 { return s.Latency.P50 }},
			{"p90", func(s SweepStep) float64 { return s.Latency.P90 }},
			{"p99", func(s SweepStep) float64 { return s.Latency.P99 }},
		})
		if err != nil {
			return nil, fmt.Errorf("%s latency chart: %w", sw.Scenario, err)
		}
		cpu, err := chart(sw.Scenario+": CPU per delivered event", "CPU (µs per event)", sw.Steps, []series{
			{"TrackOps process", func(s SweepStep) float64 { return s.TrackOpsCPUus }},
			{"PostgreSQL backends", func(s SweepStep) float64 { return s.PostgresCPUus }},
		})
		if err != nil {
			return nil, fmt.Errorf("%s CPU chart: %w", sw.Scenario, err)
		}
		out[sw.Scenario+"-latency.svg"], out[sw.Scenario+"-cpu.svg"] = lat, cpu
	}
	return out, nil
}

type series struct {
	name  string
	value func(SweepStep) float64
}

func chart(title, yLabel string, steps []SweepStep, ss []series) ([]byte, error) {
	p, err := newChart(title, yLabel, steps, ss)
	if err != nil {
		return nil, err
	}
	c := vgsvg.NewWith(vgsvg.UseWH(16*vg.Centimeter, 10*vg.Centimeter))
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func newChart(title, yLabel string, steps []SweepStep, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "offered rate (events/s)"
	p.Y.Label.Text = yLabel
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	for i, s := range ss {
		var xys plotter.XYs
		for _, st := range steps {
			// A log axis has no zero: a step without the figure is left out.
			if v := s.value(st); v > 0 && !math.IsNaN(v) {
				xys = append(xys, plotter.XY{X: st.Offered, Y: v})
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, err
		}
		line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
		points.Shape = draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}
	return p, nil
}
