package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Lines returns the effective configuration as "PIPELINE_NAME=value"
// lines, in the order of EnvVars, with every secret redacted (Redacted):
// what 'pipeline config print' shows. Settings the environment cannot
// express (env:"-") are left out.
func (c Config) Lines() []string {
	var out []string
	walk(reflect.ValueOf(c.Redacted()), "PIPELINE_", func(key string, v reflect.Value) {
		out = append(out, key+"="+format(v))
	})
	return out
}

// walk visits the leaf settings of a configuration struct with their
// variable names, following the env and envPrefix tags as caarlos0/env
// does for the shapes used here (nested and embedded structs).
func walk(v reflect.Value, prefix string, fn func(string, reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, hasTag := f.Tag.Lookup("env")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) && !hasTag {
			walk(v.Field(i), prefix+f.Tag.Get("envPrefix"), fn)
			continue
		}
		if hasTag {
			fn(prefix+name, v.Field(i))
		}
	}
}

func format(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v.Interface())
}
