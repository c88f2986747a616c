package pipelines

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"go.yaml.in/yaml/v3"
)

// fingerprint is a pipeline's Fingerprint: the SHA-256 of a canonical
// JSON form of what the pipeline's behaviour depends on. That is the
// pipeline's own subtree of the file after ${VAR} expansion (with aliases
// and merge keys resolved, map keys sorted, every scalar as its text, so
// formatting, comments, key order and quoting do not count), and the
// sections it depends on by name: "rtmp" for a source that takes its
// publishes from the shared RTMP listener. The pipeline's name is not in
// it (a reload matches pipelines by name), nor the other sections (the
// relay, admin and log settings do not restart pipelines). The hash keeps
// option values such as stream keys out of logs that print it.
func fingerprint(pipeline *yaml.Node, deps map[string]*yaml.Node) string {
	form := map[string]any{"pipeline": canonical(pipeline)}
	for name, n := range deps {
		form[name] = canonical(n)
	}
	data, err := json.Marshal(form) // encoding/json sorts map keys
	if err != nil {
		panic("pipelines: fingerprint: " + err.Error()) // strings, maps and lists always marshal
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// canonical turns a node into plain maps, lists and strings (nil for a
// null or absent node). The tree was bounded by checkTree.
func canonical(n *yaml.Node) any {
	n = deref(n)
	switch {
	case n == nil || isNull(n):
		return nil
	case n.Kind == yaml.MappingNode:
		var quiet problems
		m := make(map[string]any)
		for _, e := range quiet.entries(n, "") {
			m[e.key.Value] = canonical(e.value)
		}
		return m
	case n.Kind == yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, c := range n.Content {
			l[i] = canonical(c)
		}
		return l
	}
	return n.Value
}
