package pipelines

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ConfigError is every problem found in a configuration, sorted by
// position. Its Error is one line per problem:
//
//	moqbridge.yaml:12:9: pipelines.obs.sinks[1].fmp4.segment: expected a duration like 10s, got "ten"
type ConfigError struct {
	Problems []Problem
}

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Problem is one thing wrong in a configuration: where, under which key
// (dotted, "pipelines.obs.sinks[1].fmp4.segment"; "" for the file as a
// whole) and what.
type Problem struct {
	Pos Position
	Key string
	Msg string
}

// String is "file:line:col: key: message", leaving out what is unknown.
func (p Problem) String() string {
	var b strings.Builder
	if pos := p.Pos.String(); pos != "" {
		b.WriteString(pos)
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// String is "file:line:col"; the file is left out when empty, the
// column when zero.
func (p Position) String() string {
	var parts []string
	if p.File != "" {
		parts = append(parts, p.File)
	}
	if p.Line > 0 {
		parts = append(parts, strconv.Itoa(p.Line))
		if p.Col > 0 {
			parts = append(parts, strconv.Itoa(p.Col))
		}
	}
	return strings.Join(parts, ":")
}

// problems collects the problems of one parse.
type problems struct {
	file string
	list []Problem
	// settled are keys with a problem already that makes any further one
	// at them noise (a ${VAR} that could not be expanded).
	settled map[string]bool
}

func (ps *problems) pos(n *yaml.Node) Position {
	if n == nil {
		return Position{File: ps.file}
	}
	return Position{File: ps.file, Line: n.Line, Col: n.Column}
}

// add records a problem at node n (nil: the file as a whole).
func (ps *problems) add(n *yaml.Node, key, format string, args ...any) {
	if ps.settled[key] {
		return
	}
	ps.list = append(ps.list, Problem{Pos: ps.pos(n), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (ps *problems) count() int { return len(ps.list) }

// settle records that key has its problem: later ones at it are dropped.
func (ps *problems) settle(key string) {
	if ps.settled == nil {
		ps.settled = make(map[string]bool)
	}
	ps.settled[key] = true
}

// err returns the problems as a *ConfigError sorted by position, or nil.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	sort.SliceStable(ps.list, func(i, j int) bool {
		a, b := ps.list[i].Pos, ps.list[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	if len(ps.list) > maxProblems {
		more := len(ps.list) - maxProblems
		ps.list = append(ps.list[:maxProblems:maxProblems], Problem{Pos: Position{File: ps.file}, Msg: fmt.Sprintf("… and %d more problems", more)})
	}
	return &ConfigError{Problems: ps.list}
}

// maxProblems bounds the problems reported: past a hundred, the rest are
// counted, not listed (a file of garbage need not make a megabyte of
// errors).
const maxProblems = 100

// joinKey extends a dotted key path with a map key; a key that would be
// ambiguous in the dotted form (a dot, a bracket, a space) is quoted.
func joinKey(parent, name string) string {
	if !plainKey(name) {
		name = strconv.Quote(name)
		if parent == "" {
			return name
		}
		return parent + "[" + name + "]"
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// indexKey extends a dotted key path with a list index.
func indexKey(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func plainKey(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r == '.' || r == '[' || r == ']' || r == '"' || r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}
