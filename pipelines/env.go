package pipelines

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// expandEnv replaces ${VAR} and ${VAR:-default} in every scalar value of
// the tree (keys are left alone) with the environment's values, and $$
// with a single $; any other $ stays as it is. An unset variable without
// a default, or a malformed reference, is a problem at its scalar. Each
// node is expanded once: aliases are not followed, the nodes they stand
// for are expanded where they are defined.
func (ps *problems) expandEnv(n *yaml.Node, lookup func(string) (string, bool), path string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = indexKey(path, i)
			}
			ps.expandEnv(c, lookup, p)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			ps.expandEnv(n.Content[i+1], lookup, joinKey(path, n.Content[i].Value))
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		v, err := expandString(n.Value, lookup)
		if err != nil {
			// Reported here; what decoding or validating the unexpanded
			// text would add at this key is noise.
			ps.add(n, path, "%s", err.Error())
			ps.settle(path)
			return
		}
		if v != n.Value {
			n.Value = v
			if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				n.Tag = "" // a plain scalar's type follows its new text
			}
		}
	}
}

// expandString expands one scalar's text.
func expandString(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i == len(s)-1 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			s = s[i+2:]
			continue
		case '{':
		default:
			b.WriteByte('$')
			s = s[i+1:]
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q (a literal $ is written $$)", s[i:])
		}
		ref := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("${%s}: %q is not a variable name (letters, digits and _, not starting with a digit)", ref, name)
		}
		val, set := lookup(name)
		switch {
		case set && (val != "" || !hasDef):
			b.WriteString(val)
		case hasDef:
			b.WriteString(def)
		default:
			return "", fmt.Errorf("environment variable %s is not set (give a default with ${%s:-default})", name, name)
		}
		s = s[i+end+1:]
	}
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
