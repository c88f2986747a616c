package pipelines

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Bounds on what a configuration may make the parser do. yaml/v3 itself
// bounds nesting at 10000 levels and, decoding into a yaml.Node, does not
// expand aliases; this package walks the tree itself, so it bounds the
// expanded tree (an alias bomb, "billion laughs", is a few lines that
// expand exponentially) and the nesting that a configuration needs.
const (
	// MaxConfigSize is the largest configuration file accepted.
	MaxConfigSize = 1 << 20
	// maxNodes bounds the nodes of the tree with every alias expanded.
	maxNodes = 1 << 20
	// maxDepth bounds nesting; real configurations need well under ten.
	maxDepth = 64
)

// checkTree refuses a tree whose expansion is too big or too deep, or
// whose aliases refer to a node containing them, so that every later
// walk, which follows aliases, is bounded.
func checkTree(root *yaml.Node) error {
	type cost struct{ size, depth int }
	memo := make(map[*yaml.Node]cost)
	visiting := make(map[*yaml.Node]bool)
	var walk func(n *yaml.Node, level int) (cost, error)
	walk = func(n *yaml.Node, level int) (cost, error) {
		if level > maxDepth {
			return cost{}, fmt.Errorf("nested deeper than %d levels", maxDepth)
		}
		if c, ok := memo[n]; ok {
			return c, nil
		}
		if visiting[n] {
			return cost{}, fmt.Errorf("an alias refers to a node that contains it")
		}
		visiting[n] = true
		c := cost{size: 1, depth: 1}
		children := n.Content
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			children = []*yaml.Node{n.Alias}
			c.depth = 0 // an alias stands for its node, it adds no level
		}
		for _, ch := range children {
			cc, err := walk(ch, level+c.depth)
			if err != nil {
				return cost{}, err
			}
			c.size += cc.size
			c.depth = max(c.depth, 1+cc.depth)
			if c.size > maxNodes {
				return cost{}, fmt.Errorf("more than %d values once aliases are expanded", maxNodes)
			}
		}
		visiting[n] = false
		memo[n] = c
		return c, nil
	}
	_, err := walk(root, 0)
	return err
}

// deref follows aliases to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node holds, for "expected X, got Y".
func describe(n *yaml.Node) string {
	n = deref(n)
	switch {
	case n == nil || isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a map"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// entry is one key and value of a map, aliases resolved.
type entry struct {
	key, value *yaml.Node
}

// entries lists a map's keys and values in file order, reporting
// duplicate keys (with both positions) and keys that are not strings.
// Merge keys ("<<: *defaults") are expanded: the merged map's entries
// come after the explicit ones, which override them.
func (ps *problems) entries(n *yaml.Node, path string) []entry {
	var out []entry
	seen := make(map[string]*yaml.Node)
	var merged []entry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			ps.add(k, path, "a key must be a string, got %s", describe(k))
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			merged = append(merged, ps.mergeEntries(v, path)...)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			ps.add(k, joinKey(path, k.Value), "duplicate key %q (first at %s)", k.Value, ps.pos(first))
			continue
		}
		seen[k.Value] = k
		out = append(out, entry{k, v})
	}
	for _, e := range merged {
		if _, dup := seen[e.key.Value]; !dup {
			seen[e.key.Value] = e.key
			out = append(out, e)
		}
	}
	return out
}

// mergeEntries is the value of a merge key: a map, or a list of maps of
// which the first to hold a key wins.
func (ps *problems) mergeEntries(v *yaml.Node, path string) []entry {
	switch v.Kind {
	case yaml.MappingNode:
		return ps.entries(v, path)
	case yaml.SequenceNode:
		var out []entry
		for _, m := range v.Content {
			if m = deref(m); m.Kind != yaml.MappingNode {
				ps.add(m, path, "a merge (<<) takes maps, got %s", describe(m))
				continue
			}
			out = append(out, ps.entries(m, path)...)
		}
		return out
	}
	ps.add(v, path, "a merge (<<) takes a map or a list of maps, got %s", describe(v))
	return nil
}

// lookup returns the value of key in map n (nil when absent or n is no
// map), without reporting anything.
func lookup(n *yaml.Node, key string) *yaml.Node {
	if e, ok := findEntry(n, key); ok {
		return e.value
	}
	return nil
}

// keyNode returns the key node of key in map n, or nil.
func keyNode(n *yaml.Node, key string) *yaml.Node {
	if e, ok := findEntry(n, key); ok {
		return e.key
	}
	return nil
}

// findEntry returns the entry of key in map n, merges resolved, without
// reporting anything.
func findEntry(n *yaml.Node, key string) (entry, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return entry{}, false
	}
	var quiet problems
	for _, e := range quiet.entries(n, "") {
		if e.key.Value == key {
			return e, true
		}
	}
	return entry{}, false
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decode sets v from n strictly: an unknown key, a value of the wrong
// type or a malformed one is a problem at its position, and decoding
// goes on with the rest so that every problem is reported at once. A
// key the file leaves out keeps the value v holds (its default); a null
// value resets a scalar and leaves a map or struct as it is.
func (ps *problems) decode(n *yaml.Node, v reflect.Value, path string) {
	n = deref(n)
	if n == nil {
		return
	}
	if !v.CanSet() {
		ps.add(n, path, "cannot be set: the options type hides it (an unexported embedded pointer)")
		return
	}
	t := v.Type()
	if isNull(n) {
		switch t.Kind() {
		case reflect.Struct, reflect.Map:
		case reflect.Pointer:
			if t.Elem().Kind() != reflect.Struct {
				v.SetZero()
			}
		default:
			v.SetZero()
		}
		return
	}
	if v.CanAddr() && reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			ps.add(n, path, "%s", err.Error())
		}
		return
	}
	if t == durationType {
		d, err := time.ParseDuration(scalar(n))
		if n.Kind != yaml.ScalarNode || err != nil {
			ps.add(n, path, "expected a duration like 10s, got %s", describe(n))
			return
		}
		v.SetInt(int64(d))
		return
	}
	if v.CanAddr() && reflect.PointerTo(t).Implements(textType) {
		if n.Kind != yaml.ScalarNode {
			ps.add(n, path, "expected a string, got %s", describe(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			ps.add(n, path, "%s", err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		ps.decode(n, v.Elem(), path)
	case reflect.Struct:
		ps.decodeStruct(n, v, path)
	case reflect.Map:
		ps.decodeMap(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			ps.add(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ps.decode(item, s.Index(i), indexKey(path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			ps.add(n, path, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		switch scalar(n) {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			ps.add(n, path, "expected true or false, got %s", describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(scalar(n), 0, t.Bits())
		if n.Kind != yaml.ScalarNode || err != nil {
			ps.add(n, path, "expected an integer, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(scalar(n), 0, t.Bits())
		if n.Kind != yaml.ScalarNode || err != nil {
			ps.add(n, path, "expected a whole number ≥ 0, got %s", describe(n))
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(scalar(n), t.Bits())
		if n.Kind != yaml.ScalarNode || err != nil {
			ps.add(n, path, "expected a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			ps.add(n, path, "%s", err.Error())
			return
		}
		if x != nil {
			if !reflect.TypeOf(x).AssignableTo(t) {
				ps.add(n, path, "expected a %s, got %s", t, describe(n))
				return
			}
			v.Set(reflect.ValueOf(x))
		}
	default:
		ps.add(n, path, "options of type %s cannot be read from YAML", t)
	}
}

// scalar is a scalar node's text, or something no parser accepts.
func scalar(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return "\x00"
	}
	return n.Value
}

func (ps *problems) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	if n.Kind != yaml.MappingNode {
		ps.add(n, path, "expected a map, got %s", describe(n))
		return
	}
	if t.Key().Kind() != reflect.String {
		ps.add(n, path, "options of type %s cannot be read from YAML", t)
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	for _, e := range ps.entries(n, path) {
		elem := reflect.New(t.Elem()).Elem()
		if old := v.MapIndex(reflect.ValueOf(e.key.Value).Convert(t.Key())); old.IsValid() {
			elem.Set(old)
		}
		ps.decode(e.value, elem, joinKey(path, e.key.Value))
		v.SetMapIndex(reflect.ValueOf(e.key.Value).Convert(t.Key()), elem)
	}
}

// structField is one option of an options struct: its yaml name and
// where it is (inline structs flattened).
type structField struct {
	name  string
	index []int
}

// fieldsOf lists the yaml keys of a struct type: the yaml tag's name, or
// the lowercased field name; "-" and unexported fields are left out,
// ",inline" structs contribute their own fields.
func fieldsOf(t reflect.Type) []structField {
	var out []structField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for _, sub := range fieldsOf(ft) {
					sub.index = append([]int{i}, sub.index...)
					out = append(out, sub)
				}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, structField{name: name, index: []int{i}})
	}
	return out
}

func (ps *problems) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		ps.add(n, path, "expected a map, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	for _, e := range ps.entries(n, path) {
		i := indexOf(names, e.key.Value)
		if i < 0 {
			ps.add(e.key, joinKey(path, e.key.Value), "%s", unknownMsg("key", e.key.Value, names))
			continue
		}
		fv := v
		for _, x := range fields[i].index {
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() && !fv.CanSet() {
					break // decode reports it
				}
				if fv.IsNil() {
					fv.Set(reflect.New(fv.Type().Elem()))
				}
				fv = fv.Elem()
			}
			fv = fv.Field(x)
		}
		ps.decode(e.value, fv, joinKey(path, e.key.Value))
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
