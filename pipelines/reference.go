package pipelines

import (
	"reflect"
	"time"
)

// ReferenceKeys lists every key a configuration may hold, dotted, for a
// test that checks the documented config reference against the schema:
// the sections' keys ("server.auth.public", "rtmp.listen"), a pipeline's
// ("pipelines.NAME.restart.min"), and every registered kind's options
// ("pipelines.NAME.source.fmp4.file", "pipelines.NAME.sinks[].fmp4.dir").
// Options that are lists or maps of structs are listed by their own key
// only.
func ReferenceKeys(reg *Registry) []string {
	var keys []string
	for _, s := range []struct {
		name string
		v    any
	}{
		{"server", ServerConfig{}}, {"rtmp", RTMPConfig{}}, {"admin", AdminConfig{}}, {"log", LogConfig{}},
	} {
		keys = append(keys, s.name)
		keys = appendKeys(keys, s.name, reflect.TypeOf(s.v))
	}
	keys = append(keys, "pipelines")
	const p = "pipelines.NAME"
	for _, k := range pipelineKeys {
		keys = append(keys, p+"."+k)
	}
	keys = appendKeys(keys, p+".restart", reflect.TypeFor[RestartPolicy]())
	if reg != nil {
		for _, name := range reg.SourceNames() {
			k, _ := reg.Source(name)
			keys = append(keys, p+".source."+name)
			keys = appendKeys(keys, p+".source."+name, reflect.TypeOf(k.Options()))
		}
		for _, name := range reg.SinkNames() {
			k, _ := reg.Sink(name)
			keys = append(keys, p+".sinks[]."+name)
			keys = appendKeys(keys, p+".sinks[]."+name, reflect.TypeOf(k.Options()))
		}
	}
	return keys
}

// appendKeys appends the yaml keys of struct type t under prefix,
// descending into nested structs (not into durations, sizes and other
// values read from a scalar).
func appendKeys(keys []string, prefix string, t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
		return keys
	}
	for _, f := range fieldsOf(t) {
		key := prefix + "." + f.name
		keys = append(keys, key)
		ft := t.FieldByIndex(f.index).Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(unmarshalerType) && !reflect.PointerTo(ft).Implements(textType) {
			keys = appendKeys(keys, key, ft)
		}
	}
	return keys
}
