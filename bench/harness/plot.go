package main

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// panel is one chart: the latency distributions of every topology for one protocol
// and rate.
type panel struct {
	title  string
	series []series
}

type series struct {
	name string
	cdf  []cdfPoint
}

// nines maps a percentile to the x axis: 0 at p0, 1 at p90, 2 at p99, 3 at p99.9, so
// the tail gets as much room as the body (as HdrHistogram plots do).
func nines(percent float64) float64 {
	return -math.Log10(1 - math.Min(percent, 99.99)/100)
}

// writePlot draws the panels in a grid of cols columns into a PNG file.
func writePlot(path string, panels []panel, cols int) error {
	if len(panels) == 0 {
		return nil
	}
	rows := (len(panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	ticks := []plot.Tick{{Value: nines(0), Label: "0%"}, {Value: nines(50), Label: "50%"}, {Value: nines(90), Label: "90%"},
		{Value: nines(99), Label: "99%"}, {Value: nines(99.9), Label: "99.9%"}, {Value: nines(99.99), Label: "99.99%"}}
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "percentile"
		p.Y.Label.Text = "latency (ms, log scale)"
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.Y.Scale = plot.LogScale{}
		var yt []plot.Tick
		for _, v := range []float64{0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000} {
			yt = append(yt, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		}
		p.Y.Tick.Marker = plot.ConstantTicks(yt)
		p.Legend.Top = true
		p.Legend.Left = true
		p.Legend.XOffs = vg.Millimeter * 3
		p.Legend.YOffs = -vg.Millimeter * 3
		p.Add(plotter.NewGrid())
		for j, s := range pn.series {
			var xys plotter.XYs
			for _, c := range s.cdf {
				if c.Ms <= 0 {
					continue
				}
				xys = append(xys, plotter.XY{X: nines(c.Percent), Y: c.Ms})
			}
			if len(xys) == 0 {
				continue
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return fmt.Errorf("plot %s/%s: %w", pn.title, s.name, err)
			}
			l.Color = plotutil.Color(j)
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(s.name, l)
		}
		grid[i/cols][i%cols] = p
	}
	const w, h = 9 * vg.Inch, 4 * vg.Inch
	img := vgimg.New(w*vg.Length(cols)/2, h*vg.Length(rows))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(grid, tiles, dc)
	for i := range grid {
		for j := range grid[i] {
			if grid[i][j] != nil {
				grid[i][j].Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
