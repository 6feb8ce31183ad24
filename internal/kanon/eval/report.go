package eval

import (
	"fmt"
	"time"

	"github.com/privacy-pipeline/pipeline/internal/kanon/castle"
)

// DefaultKs are the k of the evaluation table.
var DefaultKs = []int{5, 10, 25, 50, 100}

// DefaultWindows are the aggregate window sizes in records (0: the whole
// file as one window).
var DefaultWindows = []int{0, 1000, 10000}

// PaperFigure is a reference figure of Cao et al. (IEEE TDSC 2011) on
// Adult, read off the paper's plots (see the data set's README).
type PaperFigure struct {
	K           int     `json:"k"`
	NumericOnly bool    `json:"numeric_only"`
	InfoLoss    float64 `json:"paper_info_loss"`
}

// PaperFigures are the reference figures at delta 10,000 and beta 50.
var PaperFigures = []PaperFigure{
	{K: 20, InfoLoss: 0.18}, {K: 50, InfoLoss: 0.27}, {K: 100, InfoLoss: 0.35}, {K: 200, InfoLoss: 0.39},
	{K: 50, NumericOnly: true, InfoLoss: 0.13}, {K: 100, NumericOnly: true, InfoLoss: 0.175},
	{K: 200, NumericOnly: true, InfoLoss: 0.245}, {K: 400, NumericOnly: true, InfoLoss: 0.325},
}

// CastleFigures is the JSON form of a CASTLE run.
type CastleFigures struct {
	InfoLoss         float64 `json:"info_loss"`
	InfoLossReleased float64 `json:"info_loss_released"`
	Suppressed       int     `json:"suppressed"`
	Reused           int     `json:"reused"`
	MaxDelay         int64   `json:"max_delay"`
	RecordsPerSec    float64 `json:"records_per_s"`
}

func figures(r CastleResult) CastleFigures {
	return CastleFigures{InfoLoss: round4(r.AvgInfoLoss), InfoLossReleased: round4(r.AvgInfoLossReleased), Suppressed: r.Suppressed,
		Reused: r.Reused, MaxDelay: r.MaxDelay, RecordsPerSec: float64(int64(r.RecordsPerSec))}
}

func round4(f float64) float64 { return float64(int64(f*10000+0.5)) / 10000 }

// KResult is the evaluation of one k.
type KResult struct {
	K          int             `json:"k"`
	Aggregates AggregateResult `json:"aggregates"`
	Castle     CastleFigures   `json:"castle"`
}

// Comparison sets one measured CASTLE figure beside the paper's.
type Comparison struct {
	PaperFigure
	// Measured is the product's CASTLE (greedy split, the default).
	Measured float64 `json:"info_loss"`
	// Ratio is measured / paper: at most 1 matches or beats the paper.
	Ratio float64 `json:"ratio"`
	// MeasuredKNN is CASTLE with the paper's own KNN split.
	MeasuredKNN float64 `json:"info_loss_paper_split"`
}

// Report is the whole evaluation.
type Report struct {
	Records       int          `json:"records"`
	Dropped       int          `json:"dropped_with_missing_values"`
	Delta         int          `json:"delta"`
	Beta          int          `json:"beta"`
	Mu            int          `json:"mu"`
	QIs           []string     `json:"castle_quasi_identifiers"`
	AggregateDims []string     `json:"aggregate_dimensions"`
	Results       []KResult    `json:"results"`
	Paper         []Comparison `json:"paper_comparison,omitempty"`
	ElapsedS      float64      `json:"elapsed_s"`
}

// Options configure Run.
type Options struct {
	// Ks are the k to evaluate (default DefaultKs).
	Ks []int
	// Delta, Beta and Mu are CASTLE's parameters (default 10000, 50, 100).
	Delta, Beta, Mu int
	// Seed seeds CASTLE.
	Seed uint64
	// Dims are the aggregate dimensions (default DefaultAggregateDims).
	Dims []string
	// Windows are the aggregate windows in records (default DefaultWindows).
	Windows []int
	// Paper adds the comparison with the paper's reference figures.
	Paper bool
}

// Run evaluates both mechanisms on the Adult data in dir.
func Run(dir string, opt Options) (Report, error) {
	start := time.Now()
	if len(opt.Ks) == 0 {
		opt.Ks = DefaultKs
	}
	if opt.Delta <= 0 {
		opt.Delta = 10000
	}
	if opt.Beta <= 0 {
		opt.Beta = 50
	}
	if opt.Mu <= 0 {
		opt.Mu = 100
	}
	if opt.Seed == 0 {
		opt.Seed = 1
	}
	if len(opt.Dims) == 0 {
		opt.Dims = DefaultAggregateDims
	}
	if len(opt.Windows) == 0 {
		opt.Windows = DefaultWindows
	}
	ds, err := LoadAdult(dir)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Records: len(ds.Records), Dropped: ds.Dropped, Delta: opt.Delta, Beta: opt.Beta, Mu: opt.Mu, AggregateDims: opt.Dims}
	aggs, err := Aggregates(ds, dir, opt.Dims, opt.Ks, opt.Windows)
	if err != nil {
		return Report{}, err
	}
	castleRun := func(k int, numericOnly bool, split castle.SplitMethod) (CastleResult, error) {
		return Castle(ds, CastleOptions{K: k, Delta: opt.Delta, Beta: opt.Beta, Mu: opt.Mu, Seed: opt.Seed, NumericOnly: numericOnly, Split: split})
	}
	for i, k := range opt.Ks {
		if k < 2 {
			return Report{}, fmt.Errorf("eval: k must be at least 2, got %d", k)
		}
		c, err := castleRun(k, false, castle.SplitDefault)
		if err != nil {
			return Report{}, err
		}
		rep.QIs = c.QIs
		rep.Results = append(rep.Results, KResult{K: k, Aggregates: aggs[i], Castle: figures(c)})
	}
	if opt.Paper {
		for _, p := range PaperFigures {
			if p.K > 200 {
				continue // k = 400 (numeric only) takes long and adds little
			}
			c, err := castleRun(p.K, p.NumericOnly, castle.SplitDefault)
			if err != nil {
				return Report{}, err
			}
			knn, err := castleRun(p.K, p.NumericOnly, castle.SplitKNN)
			if err != nil {
				return Report{}, err
			}
			rep.Paper = append(rep.Paper, Comparison{PaperFigure: p, Measured: round4(c.AvgInfoLoss), Ratio: round4(c.AvgInfoLoss / p.InfoLoss),
				MeasuredKNN: round4(knn.AvgInfoLoss)})
		}
	}
	rep.ElapsedS = float64(int64(time.Since(start).Seconds()*100)) / 100
	return rep, nil
}
