package throughput

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// ReadResult reads a throughput result from the output of 'bench
// throughput --json': the last line that is a JSON object (a file holding
// only the object works too).
func ReadResult(b []byte) (Result, error) {
	var res Result
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		l := bytes.TrimSpace(lines[i])
		if len(l) == 0 || l[0] != '{' {
			continue
		}
		if err := json.Unmarshal(l, &res); err == nil {
			return res, nil
		}
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("no throughput result JSON: %w", err)
	}
	return res, nil
}

// PlotFile writes Plot's PNG to path.
func PlotFile(res Result, path string) error {
	var buf bytes.Buffer
	if err := Plot(res, &buf); err != nil {
		return err
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bench plot: %w", err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bench plot: %w", err)
	}
	return nil
}

var (
	jobColor    = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	passColor   = color.RGBA{R: 127, G: 127, B: 127, A: 255}
	aggColor    = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	castleColor = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	redisColor  = color.RGBA{R: 214, G: 39, B: 40, A: 255}
)

// Plot draws the sweeps of a result as a PNG of six panels: events/s
// against purposes, distinct subjects (log x), record size and replicas
// (the job, and the passthrough in transactions as its baseline), the
// k-anonymity processors' records/s against partitions, and Redis round
// trips per 1,000 events against subjects. A sweep not measured leaves
// its panel empty.
func Plot(res Result, w io.Writer) error {
	if res.Scaling == nil || len(res.Scaling.Points) == 0 {
		return errors.New("bench plot: the result has no sweeps (run bench throughput --sweep)")
	}
	pts := append([]Point(nil), res.Scaling.Points...)
	fillBaselines(pts) // a result from before the baselines were filled
	by := map[string][]Point{}
	for _, p := range pts {
		by[p.Sweep] = append(by[p.Sweep], p)
	}
	sub := fmt.Sprintf("%d events per point, %d round(s)", res.Scaling.Events, max(1, res.Scaling.Rounds))
	panels := [][]*plot.Plot{{nil, nil, nil}, {nil, nil, nil}}
	var err error
	job := func(p Point) float64 { return p.JobEPS }
	pass := func(p Point) float64 { return p.PassthroughEPS }
	if panels[0][0], err = panel("events/s vs purposes granted", "purposes granted (clean records per event)", "events/s", by[SweepPurposes], false,
		series{"privacy job", jobColor, job, false}, series{"passthrough-tx (5 copies)", passColor, pass, true}); err != nil {
		return err
	}
	if panels[0][1], err = panel("events/s vs distinct subjects", "distinct subjects (log)", "events/s", by[SweepSubjects], true,
		series{"privacy job", jobColor, job, false}, series{"passthrough-tx", passColor, pass, true}); err != nil {
		return err
	}
	if panels[0][2], err = panel("events/s vs record size", "raw event bytes", "events/s", by[SweepSize], false,
		series{"privacy job", jobColor, job, false}, series{"passthrough-tx", passColor, pass, false}); err != nil {
		return err
	}
	if panels[1][0], err = panel("events/s vs replicas (12 partitions)", "replicas (runners in one process)", "events/s", by[SweepReplicas], false,
		series{"privacy job", jobColor, job, false}, series{"passthrough-tx", passColor, pass, false}); err != nil {
		return err
	}
	if panels[1][1], err = panel("k-anonymity records/s vs partitions", "partitions", "input records/s", by[SweepKanon], false,
		series{"aggregates (stage 1)", aggColor, func(p Point) float64 { return p.KanonAggRPS }, false},
		series{"CASTLE records", castleColor, func(p Point) float64 { return p.KanonRecRPS }, false}); err != nil {
		return err
	}
	if panels[1][2], err = panel("Redis round trips vs distinct subjects", "distinct subjects (log)", "round trips / 1000 events", by[SweepSubjects], true,
		series{"privacy job", redisColor, func(p Point) float64 { return p.RedisRoundTrips }, false}); err != nil {
		return err
	}
	panels[0][0].Title.Text += "\n" + sub
	img := vgimg.New(vg.Points(1200), vg.Points(720))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 3, PadX: vg.Points(18), PadY: vg.Points(18),
		PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(8)}
	canvases := plot.Align(panels, tiles, dc)
	for r := range panels {
		for c := range panels[r] {
			panels[r][c].Draw(canvases[r][c])
		}
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("bench plot: png: %w", err)
	}
	return nil
}

// series is one line of a panel; flat draws the first point's value as a
// horizontal dashed line (a baseline measured once).
type series struct {
	name  string
	color color.Color
	y     func(Point) float64
	flat  bool
}

// panel is one plot of a sweep's points.
func panel(title, x, y string, pts []Point, logX bool, ss ...series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	p.Legend.Top, p.Legend.Left = true, false
	p.Y.Min = 0
	p.Y.Tick.Marker = humanTicks{}
	if len(pts) == 0 {
		p.Title.Text += "\n(not measured)"
		return p, nil
	}
	if logX {
		p.X.Scale = plot.LogScale{}
	}
	p.X.Tick.Marker = xTicks(pts)
	for _, s := range ss {
		xy := plotter.XYs{}
		for _, pt := range pts {
			if v := s.y(pt); v > 0 && (!logX || pt.X > 0) {
				xy = append(xy, plotter.XY{X: pt.X, Y: v})
			}
		}
		if len(xy) == 0 {
			continue
		}
		if s.flat {
			v := xy[0].Y
			for i := range xy {
				xy[i].Y = v
			}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, fmt.Errorf("bench plot: %w", err)
		}
		l.Color, l.Width = s.color, vg.Points(1.5)
		if s.flat {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			p.Add(l)
			p.Legend.Add(s.name, l)
			continue
		}
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			return nil, fmt.Errorf("bench plot: %w", err)
		}
		sc.Color, sc.Shape = s.color, draw.CircleGlyph{}
		p.Add(l, sc)
		p.Legend.Add(s.name, l, sc)
		if y := maxY(xy) * 1.35; y > p.Y.Max { // room for the legend
			p.Y.Max = y
		}
	}
	return p, nil
}

func maxY(xy plotter.XYs) float64 {
	m := 0.0
	for _, p := range xy {
		m = max(m, p.Y)
	}
	return m
}

// xTicks marks each measured x.
func xTicks(pts []Point) plot.ConstantTicks {
	var t plot.ConstantTicks
	for _, p := range pts {
		t = append(t, plot.Tick{Value: p.X, Label: human(p.X)})
	}
	return t
}

// humanTicks are the default ticks labelled 25k, 1.5M.
type humanTicks struct{}

// Ticks returns plot.DefaultTicks' ticks with human labels.
func (humanTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = human(ts[i].Value)
		}
	}
	return ts
}

// human formats 25000 as 25k and 1e7 as 10M.
func human(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
