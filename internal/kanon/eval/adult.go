// Package eval evaluates the k-anonymisation algorithms of internal/kanon
// offline on the UCI Adult data set (Becker and Kohavi, 1996, UCI Machine
// Learning Repository, CC BY 4.0): it loads the data and its ARX
// generalisation hierarchies and measures CASTLE's information loss,
// suppression, delay and throughput against the figures of Cao et al.
// (IEEE TDSC 2011).
//
// The package imports the standard library and internal/kanon/... only.
package eval

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/privacy-pipeline/pipeline/internal/kanon/hierarchy"
)

// AdultFile is the name of the full UCI data file inside the data
// directory.
const AdultFile = "adult_uci_full.csv"

// adultHeader is the expected header of AdultFile.
var adultHeader = []string{"age", "workclass", "fnlwgt", "education", "educationnum", "maritalstatus",
	"occupation", "relationship", "race", "sex", "capitalgain", "capitalloss", "hoursperweek",
	"nativecountry", "salary"}

// Numeric attribute indexes into Record.Num, in the order of NumericNames.
const (
	Age = iota
	Fnlwgt
	EducationNum
	CapitalGain
	CapitalLoss
	HoursPerWeek
	numNumeric
)

// NumericNames names the numeric attributes of Record.Num.
var NumericNames = [numNumeric]string{"age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"}

// Categorical attribute indexes into Record.Cat, in the order of
// CategoricalNames.
const (
	Workclass = iota
	Education
	MaritalStatus
	Occupation
	Race
	Sex
	NativeCountry
	numCategorical
)

// CategoricalNames names the categorical attributes of Record.Cat; each
// has a hierarchy file adult_hierarchy_<name>.csv.
var CategoricalNames = [numCategorical]string{"workclass", "education", "marital-status", "occupation", "race", "sex", "native-country"}

// column of each categorical attribute in AdultFile.
var catColumn = [numCategorical]int{1, 3, 5, 6, 8, 9, 13}

// column of each numeric attribute in AdultFile.
var numColumn = [numNumeric]int{0, 2, 4, 10, 11, 12}

// Record is one Adult row with its categorical values mapped to leaves of
// their hierarchies.
type Record struct {
	Num [numNumeric]float64
	Cat [numCategorical]hierarchy.Node
	// HighIncome is set for salary class ">50K".
	HighIncome bool
}

// Dataset is the loaded Adult data.
type Dataset struct {
	// Records are the complete rows in file order.
	Records []Record
	// Dropped counts rows with a missing value ("?").
	Dropped int
	// Hierarchies are indexed like CategoricalNames.
	Hierarchies [numCategorical]*hierarchy.Tree
	// Min and Max are the numeric domains observed in Records.
	Min, Max [numNumeric]float64
	// Aliases lists data values that matched a hierarchy leaf only after
	// normalisation (case, spaces, '-', '_'), as "attribute: data -> leaf".
	Aliases []string
}

// ErrData is wrapped by errors about the content of the data files.
var ErrData = errors.New("eval: invalid Adult data")

// LoadAdult reads AdultFile and the categorical hierarchies from dir,
// drops rows with missing values ("?"), and maps every categorical value
// to its hierarchy leaf. Values that differ from a leaf only in case,
// surrounding spaces or '-'/'_'/' ' are matched and reported in Aliases;
// any other unknown value is an error naming the line.
func LoadAdult(dir string) (*Dataset, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("eval: Adult data directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("eval: Adult data directory %s is not a directory", dir)
	}
	ds := &Dataset{}
	index := make([]map[string]hierarchy.Node, numCategorical)
	for i, name := range CategoricalNames {
		t, err := hierarchy.LoadARX(filepath.Join(dir, "adult_hierarchy_"+name+".csv"))
		if err != nil {
			return nil, fmt.Errorf("eval: hierarchy %s: %w", name, err)
		}
		ds.Hierarchies[i] = t
		index[i] = make(map[string]hierarchy.Node)
		for _, v := range t.Values() {
			n, _ := t.Lookup(v)
			index[i][normalise(v)] = n
		}
	}
	path := filepath.Join(dir, AdultFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	defer f.Close()
	if err := ds.read(f, path, index); err != nil {
		return nil, err
	}
	return ds, nil
}

func normalise(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.NewReplacer("_", "-", " ", "-").Replace(s)
}

func (ds *Dataset) read(r io.Reader, path string, index []map[string]hierarchy.Node) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	aliasSeen := map[string]bool{}
	first := true
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			continue
		}
		fields := strings.Split(text, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		if first {
			first = false
			if strings.Join(fields, ",") != strings.Join(adultHeader, ",") {
				return fmt.Errorf("%w: %s line %d: header %q, want %q", ErrData, path, line, text, strings.Join(adultHeader, ","))
			}
			continue
		}
		if len(fields) != len(adultHeader) {
			return fmt.Errorf("%w: %s line %d: %d fields, want %d", ErrData, path, line, len(fields), len(adultHeader))
		}
		missing := false
		for _, f := range fields {
			if f == "?" {
				missing = true
				break
			}
		}
		if missing {
			ds.Dropped++
			continue
		}
		var rec Record
		for i, col := range numColumn {
			v, err := strconv.ParseFloat(fields[col], 64)
			if err != nil {
				return fmt.Errorf("%w: %s line %d: %s: %w", ErrData, path, line, NumericNames[i], err)
			}
			rec.Num[i] = v
		}
		for i, col := range catColumn {
			v := fields[col]
			n, ok := ds.Hierarchies[i].Lookup(v)
			if !ok {
				n, ok = index[i][normalise(v)]
				if !ok {
					return fmt.Errorf("%w: %s line %d: %s value %q has no leaf in its hierarchy", ErrData, path, line, CategoricalNames[i], v)
				}
				a := fmt.Sprintf("%s: %q -> %q", CategoricalNames[i], v, ds.Hierarchies[i].Label(n))
				if !aliasSeen[a] {
					aliasSeen[a] = true
					ds.Aliases = append(ds.Aliases, a)
				}
			}
			rec.Cat[i] = n
		}
		switch fields[14] {
		case ">50K", ">50K.":
			rec.HighIncome = true
		case "<=50K", "<=50K.":
		default:
			return fmt.Errorf("%w: %s line %d: salary class %q", ErrData, path, line, fields[14])
		}
		if len(ds.Records) == 0 {
			ds.Min, ds.Max = rec.Num, rec.Num
		}
		for i, v := range rec.Num {
			ds.Min[i] = min(ds.Min[i], v)
			ds.Max[i] = max(ds.Max[i], v)
		}
		ds.Records = append(ds.Records, rec)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("eval: read %s: %w", path, err)
	}
	if first {
		return fmt.Errorf("%w: %s is empty", ErrData, path)
	}
	if len(ds.Records) == 0 {
		return fmt.Errorf("%w: %s has no complete rows", ErrData, path)
	}
	return nil
}
