package pipelines

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/moqbridge/moqbridge/moq"
)

// LoadOptions change how a configuration is read.
type LoadOptions struct {
	// LookupEnv resolves ${VAR}; nil means os.LookupEnv.
	LookupEnv func(name string) (string, bool)
}

// RTMPListenerUser is implemented by the options of a source kind that
// takes its broadcasts from the shared RTMP listener (the "rtmp:"
// section): a pipeline whose source reports true needs that section, and
// its Fingerprint covers it. It is a method of the options rather than of
// the kind so that one kind can both listen and pull (an rtmp source with
// a URL to play needs no listener).
type RTMPListenerUser interface {
	UsesRTMPListener() bool
}

// DirValidator is implemented by options that check themselves against
// the configuration file's directory, which relative file names in them
// are resolved against (a file that must exist, say). The loader calls
// ValidateDir instead of Validate when the options have it; its errors
// are reported as Validate's are.
type DirValidator interface {
	ValidateDir(dir string) error
}

// Default values of the sections, for the config reference.
const (
	DefaultServerListen = ":4443"
	DefaultServerTCP    = "http"
	DefaultRTMPListen   = ":1935"
	DefaultAdminListen  = "127.0.0.1:9090"
	DefaultLogLevel     = "info"
	DefaultLogFormat    = "text"
)

// DefaultRestart is the restart policy of a pipeline that sets none.
var DefaultRestart = RestartPolicy{Min: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: 0.5}

// topLevelKeys are the sections of a configuration file. Keys starting
// with "x-" are ignored too, as in Compose files: they hold anchors that
// pipelines share ("x-record: &record {dir: recordings}").
var topLevelKeys = []string{"server", "rtmp", "admin", "log", "pipelines"}

// pipelineKeys are the keys of one pipeline.
var pipelineKeys = []string{"source", "path", "from", "sinks", "restart"}

// Load reads and validates the configuration file named file, whose
// kinds are looked up in reg. A file that is not valid is reported as a
// *ConfigError listing every problem.
func Load(file string, reg *Registry) (*Config, error) {
	return LoadWith(file, reg, LoadOptions{})
}

// LoadWith is Load with options.
func LoadWith(file string, reg *Registry, opts LoadOptions) (*Config, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("pipelines: read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("pipelines: read config: %w", err)
	}
	return ParseWith(data, file, reg, opts)
}

// Parse validates a configuration held in memory; file names it in
// positions and may be "".
func Parse(data []byte, file string, reg *Registry) (*Config, error) {
	return ParseWith(data, file, reg, LoadOptions{})
}

// ParseWith is Parse with options.
func ParseWith(data []byte, file string, reg *Registry, opts LoadOptions) (*Config, error) {
	ps := &problems{file: file}
	if len(data) > MaxConfigSize {
		ps.add(nil, "", "the file is larger than %d bytes", MaxConfigSize)
		return nil, ps.err()
	}
	if reg == nil {
		reg = NewRegistry()
	}
	lookupEnv := opts.LookupEnv
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	root, err := parseYAML(data)
	if err != nil {
		ps.list = append(ps.list, yamlProblem(file, data, err))
		return nil, ps.err()
	}
	cfg := &Config{
		File:   file,
		Server: ServerConfig{Enabled: true, Listen: DefaultServerListen, TCP: DefaultServerTCP},
		Admin:  AdminConfig{Listen: DefaultAdminListen},
		Log:    LogConfig{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
	if root == nil {
		return cfg, nil // an empty file: every default, no pipelines
	}
	if err := checkTree(root); err != nil {
		ps.add(root, "", "%s", err.Error())
		return nil, ps.err()
	}
	// A ${VAR} that cannot be expanded is reported, and the rest of the
	// file is checked all the same, so that every problem shows at once.
	ps.expandEnv(root, lookupEnv, "")
	l := &loader{problems: ps, reg: reg, cfg: cfg}
	l.config(root)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseYAML reads the first and only document of data; nil for an empty
// file.
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, &yamlPosError{line: next.Line, msg: "a config file holds one YAML document; this is a second one"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

type yamlPosError struct {
	line int
	msg  string
}

func (e *yamlPosError) Error() string { return e.msg }

// yamlProblem turns a yaml/v3 syntax error ("yaml: line 3: mapping values
// are not allowed in this context") into a Problem at that line.
func yamlProblem(file string, data []byte, err error) Problem {
	var pe *yamlPosError
	if errors.As(err, &pe) {
		return Problem{Pos: Position{File: file, Line: pe.line}, Msg: pe.msg}
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		// yaml/v3 gives no position for this one: find the alias.
		name = strings.TrimSuffix(name, "' referenced")
		if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
			line := 1 + bytes.Count(data[:i], []byte("\n"))
			col := 1 + utf8.RuneCount(data[bytes.LastIndexByte(data[:i], '\n')+1:i])
			return Problem{Pos: Position{File: file, Line: line, Col: col}, Msg: fmt.Sprintf("invalid YAML: alias *%s names no anchor (&%s) defined before it", name, name)}
		}
	}
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, text
				if yamlParserProblems[msg] {
					line++ // yaml/v3 reports the parser's 0-based line for these
				}
			}
		}
	}
	return Problem{Pos: Position{File: file, Line: line}, Msg: "invalid YAML: " + msg}
}

// yamlParserProblems are the messages of yaml/v3's parser (as opposed
// to its scanner), whose line it reports counting from 0.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// loader decodes one configuration.
type loader struct {
	*problems
	reg *Registry
	cfg *Config
	// rtmpNode is the "rtmp:" section, which rtmp-listening pipelines'
	// fingerprints cover.
	rtmpNode *yaml.Node
}

func (l *loader) config(root *yaml.Node) {
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		l.add(root, "", "a config file is a map of sections (%s), got %s", strings.Join(topLevelKeys, ", "), describe(root))
		return
	}
	sections := make(map[string]entry)
	for _, e := range l.entries(root, "") {
		if strings.HasPrefix(e.key.Value, "x-") {
			continue // an extension key: a place for anchors shared below
		}
		if indexOf(topLevelKeys, e.key.Value) < 0 {
			l.add(e.key, joinKey("", e.key.Value), "%s", unknownMsg("section", e.key.Value, topLevelKeys))
			continue
		}
		sections[e.key.Value] = e
	}
	if e, ok := sections["server"]; ok {
		l.decode(e.value, reflect.ValueOf(&l.cfg.Server).Elem(), "server")
		l.checkServer(e.value)
	}
	if e, ok := sections["rtmp"]; ok {
		l.cfg.RTMP = &RTMPConfig{Listen: DefaultRTMPListen}
		l.rtmpNode = e.value
		l.decode(e.value, reflect.ValueOf(l.cfg.RTMP).Elem(), "rtmp")
		l.checkRTMP(e.key, e.value)
	}
	if e, ok := sections["admin"]; ok {
		l.decode(e.value, reflect.ValueOf(&l.cfg.Admin).Elem(), "admin")
		if a := l.cfg.Admin.Listen; a != "" {
			l.checkAddr(lookup(e.value, "listen"), "admin.listen", a)
		}
	}
	if e, ok := sections["log"]; ok {
		l.decode(e.value, reflect.ValueOf(&l.cfg.Log).Elem(), "log")
		l.checkOneOf(e.value, "log", "level", l.cfg.Log.Level, "debug", "info", "warn", "error")
		l.checkOneOf(e.value, "log", "format", l.cfg.Log.Format, "text", "json")
	}
	if e, ok := sections["pipelines"]; ok {
		l.pipelines(e.value)
	}
}

// at is the node of a section's key for a problem about it: its value
// when the file sets it, else the section.
func at(section *yaml.Node, key string) *yaml.Node {
	if v := lookup(section, key); v != nil {
		return v
	}
	return deref(section)
}

// item is the i-th item of a list for a problem about it, or the list.
func item(list *yaml.Node, i int) *yaml.Node {
	if list = deref(list); list.Kind == yaml.SequenceNode && i < len(list.Content) {
		return deref(list.Content[i])
	}
	return list
}

func (l *loader) checkOneOf(section *yaml.Node, path, key, value string, valid ...string) {
	if indexOf(valid, value) < 0 {
		l.add(at(section, key), path+"."+key, "%q is not one of %s", value, strings.Join(valid, ", "))
	}
}

// checkAddr checks a listen address: host:port, the host may be empty.
func (l *loader) checkAddr(n *yaml.Node, key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		var p int
		if p, err = strconv.Atoi(port); err == nil && (p < 0 || p > 65535) {
			err = fmt.Errorf("port %d out of range", p)
		}
	}
	if err != nil {
		l.add(n, key, "expected a listen address like :4443 or 127.0.0.1:9090, got %q", addr)
	}
}

// checkFile makes *name, a file the config names, relative to the config
// file's directory, and reports it when it is not a readable file.
func (l *loader) checkFile(n *yaml.Node, key string, name *string) {
	if *name == "" {
		return
	}
	if dir := l.cfg.Dir(); dir != "" && !filepath.IsAbs(*name) {
		*name = filepath.Join(dir, *name)
	}
	st, err := os.Stat(*name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.add(n, key, "%s does not exist", *name)
	case err != nil:
		l.add(n, key, "%v", err)
	case st.IsDir():
		l.add(n, key, "%s is a directory, not a file", *name)
	}
}

func (l *loader) checkServer(n *yaml.Node) {
	s := &l.cfg.Server
	l.checkOneOf(n, "server", "tcp", s.TCP, "http", "https", "off")
	l.checkAddr(at(n, "listen"), "server.listen", s.Listen)
	if (s.Cert == "") != (s.Key == "") {
		present, missing := "cert", "key"
		if s.Cert == "" {
			present, missing = missing, present
		}
		l.add(keyNode(n, present), "server."+missing, "cert and key go together: both PEM files, or neither for a generated development certificate")
	}
	// Files are relative to the config file, as every file option is; a
	// missing one is said now rather than when the relay starts.
	l.checkFile(at(n, "cert"), "server.cert", &s.Cert)
	l.checkFile(at(n, "key"), "server.key", &s.Key)
	authNode := at(n, "auth")
	for i := range s.Auth.Keys {
		l.checkFile(item(at(authNode, "keys"), i), indexKey("server.auth.keys", i), &s.Auth.Keys[i])
	}
	for i := range s.Auth.Secrets {
		l.checkFile(item(at(authNode, "secrets"), i), indexKey("server.auth.secrets", i), &s.Auth.Secrets[i])
	}
	// Zero liveness takes protocol.DefaultLiveness.
	if s.IdleTimeout < 0 {
		l.add(at(n, "idle_timeout"), "server.idle_timeout", "must not be negative (0 takes the default)")
	}
	if s.KeepAlive < 0 {
		l.add(at(n, "keep_alive"), "server.keep_alive", "must not be negative (0 takes the default)")
	} else if s.IdleTimeout > 0 && s.KeepAlive > 0 && s.KeepAlive >= s.IdleTimeout {
		l.add(at(n, "keep_alive"), "server.keep_alive", "%s must be shorter than idle_timeout (%s)", formatDuration(s.KeepAlive), formatDuration(s.IdleTimeout))
	}
	for i, o := range s.AllowOrigins {
		u, err := url.Parse(o)
		if o == "*" || err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && (u.Path == "" || u.Path == "/") && u.RawQuery == "" {
			continue
		}
		l.add(item(at(n, "allow_origins"), i), indexKey("server.allow_origins", i), "expected an origin like https://app.example, got %q", o)
	}
	lim := s.Limits
	limNode := at(n, "limits")
	for _, c := range []struct {
		key string
		v   int64
		min int64
	}{
		{"max_sessions", int64(lim.MaxSessions), -1},
		{"max_sessions_per_addr", int64(lim.MaxSessionsPerAddr), -1},
		{"max_pending", int64(lim.MaxPending), -1},
		{"max_streams", int64(lim.MaxStreams), 0},
		{"max_session_buffer", int64(lim.MaxSessionBuffer), 0},
		{"max_server_buffer", int64(lim.MaxServerBuffer), 0},
		{"max_group_size", int64(lim.MaxGroupSize), 0},
	} {
		if c.v < c.min {
			what := "must not be negative (0 takes the default)"
			if c.min < 0 {
				what = "must be -1 (no limit), 0 (the default) or positive"
			}
			l.add(at(limNode, c.key), "server.limits."+c.key, "%s", what)
		}
	}
	if lim.MaxSessionBuffer > 0 && lim.MaxServerBuffer > 0 && lim.MaxSessionBuffer > lim.MaxServerBuffer {
		l.add(at(limNode, "max_session_buffer"), "server.limits.max_session_buffer", "%s is larger than max_server_buffer (%s)", lim.MaxSessionBuffer, lim.MaxServerBuffer)
	}
}

func (l *loader) checkRTMP(key, n *yaml.Node) {
	r := l.cfg.RTMP
	if r.Listen == "" && r.RTMPS == "" {
		l.add(key, "rtmp", "neither listen nor rtmps is set: the RTMP listener would listen nowhere")
	}
	if r.Listen != "" {
		l.checkAddr(at(n, "listen"), "rtmp.listen", r.Listen)
	}
	if r.RTMPS != "" {
		l.checkAddr(at(n, "rtmps"), "rtmp.rtmps", r.RTMPS)
	}
	if r.MaxConns < -1 {
		l.add(at(n, "max_conns"), "rtmp.max_conns", "must be -1 (no limit), 0 (the default) or positive")
	}
	if r.MaxConnsPerAddr < -1 {
		l.add(at(n, "max_conns_per_addr"), "rtmp.max_conns_per_addr", "must be -1 (no limit), 0 (the default) or positive")
	}
}

// pipelines decodes the "pipelines:" map.
func (l *loader) pipelines(n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.add(n, "pipelines", "expected a map of pipelines by name, got %s", describe(n))
		return
	}
	// Duplicate names are found here, with both positions, by entries.
	for _, e := range l.entries(n, "pipelines") {
		if p := l.pipeline(e.key, e.value); p != nil {
			l.cfg.Pipelines = append(l.cfg.Pipelines, p)
		}
	}
	l.checkPublishers()
}

// pipeline decodes one pipeline; nil when it has problems.
func (l *loader) pipeline(nameNode, n *yaml.Node) *Pipeline {
	before := l.count()
	name := nameNode.Value
	path := joinKey("pipelines", name)
	p := &Pipeline{Name: name, Restart: DefaultRestart, Pos: l.pos(nameNode)}
	if name == "" {
		l.add(nameNode, path, "a pipeline needs a name")
	}
	if isNull(n) {
		l.add(nameNode, path, "empty pipeline: give it a source and a path, or a from pattern, and sinks")
		return nil
	}
	if n.Kind != yaml.MappingNode {
		l.add(n, path, "expected a pipeline (a map with source and path, or from, and sinks), got %s", describe(n))
		return nil
	}
	keys := make(map[string]entry)
	for _, e := range l.entries(n, path) {
		if indexOf(pipelineKeys, e.key.Value) < 0 {
			l.add(e.key, joinKey(path, e.key.Value), "%s", unknownMsg("key", e.key.Value, pipelineKeys))
			continue
		}
		keys[e.key.Value] = e
	}
	src, hasSource := keys["source"]
	pathE, hasPath := keys["path"]
	from, hasFrom := keys["from"]
	sinks, hasSinks := keys["sinks"]
	switch {
	case hasSource && hasFrom:
		l.add(from.key, path+".from", "a pipeline has either a source (publishing at path) or from (taking broadcasts already published), not both")
	case hasFrom && hasPath:
		l.add(pathE.key, path+".path", "path goes with source; a from pipeline takes the paths its pattern matches")
	case !hasSource && !hasFrom:
		l.add(nameNode, path, "missing source (with a path) or from: a pipeline needs something to take broadcasts from")
	case hasSource && !hasPath:
		l.add(nameNode, path, "missing path: where the source publishes (e.g. path: live/cam)")
	}
	if hasPath {
		decoded := l.count()
		l.decode(pathE.value, reflect.ValueOf(&p.Path).Elem(), path+".path")
		if l.count() == decoded {
			l.checkPath(pathE.value, path+".path", &p.Path)
		}
	}
	if hasFrom && !hasSource {
		decoded := l.count()
		l.decode(from.value, reflect.ValueOf(&p.From).Elem(), path+".from")
		if l.count() == decoded {
			l.checkPattern(from.value, path+".from", &p.From)
		}
		if !hasSinks || len(deref(sinks.value).Content) == 0 {
			l.add(from.key, path+".sinks", "a from pipeline needs at least one sink")
		}
	}
	if hasSource {
		p.Source = l.source(src, path+".source", p.Path)
	}
	if hasSinks {
		p.Sinks = l.sinks(sinks.value, path+".sinks")
	}
	if e, ok := keys["restart"]; ok {
		l.decode(e.value, reflect.ValueOf(&p.Restart).Elem(), path+".restart")
		l.checkRestart(e.value, path+".restart", p.Restart)
	}
	if l.count() > before {
		return nil
	}
	deps := map[string]*yaml.Node{}
	if p.Source != nil {
		if u, ok := p.Source.Options.(RTMPListenerUser); ok && u.UsesRTMPListener() {
			deps["rtmp"] = l.rtmpNode
		}
	}
	p.Fingerprint = fingerprint(n, deps)
	return p
}

// checkPath checks and cleans the path a source publishes at: a path or
// a template ("live/{key}") a listener kind fills, never a pattern.
func (l *loader) checkPath(n *yaml.Node, key string, p *string) {
	clean := moq.CleanPath(*p)
	switch {
	case clean == "":
		l.add(n, key, "expected a broadcast path like live/cam, got %s", describe(n))
	case strings.Contains(clean, "*"):
		l.add(n, key, "%q: a source publishes at a path, not a pattern (patterns are for from)", *p)
	default:
		if err := moq.ValidatePath(clean); err != nil {
			l.add(n, key, "%s", err.Error())
		}
	}
	*p = clean
}

// checkPattern checks and cleans a from pattern: an exact path, or
// "prefix/*" (every broadcast under prefix), or "*" (every broadcast).
func (l *loader) checkPattern(n *yaml.Node, key string, p *string) {
	clean := moq.CleanPath(*p)
	prefix, wildcard := strings.CutSuffix(clean, "*")
	if wildcard && prefix != "" && !strings.HasSuffix(prefix, "/") {
		wildcard, prefix = false, clean // "live*": reported below
	}
	prefix = strings.TrimSuffix(prefix, "/")
	switch {
	case clean == "":
		l.add(n, key, "expected a path pattern like live/* or live/cam, got %s", describe(n))
	case strings.Contains(prefix, "*"):
		l.add(n, key, "%q is not a path pattern: * may only be the last segment (live/*)", *p)
	case strings.ContainsAny(prefix, "{}"):
		l.add(n, key, "%q is not a path pattern: {…} templates are for a source's path; from takes live/* or an exact path", *p)
	default:
		if err := moq.ValidatePath(prefix); err != nil {
			l.add(n, key, "%s", err.Error())
		}
	}
	*p = clean
}

func (l *loader) checkRestart(n *yaml.Node, key string, r RestartPolicy) {
	if r.Min <= 0 {
		l.add(at(n, "min"), key+".min", "must be positive")
	}
	if r.Max < r.Min {
		l.add(at(n, "max"), key+".max", "%s is shorter than min (%s)", formatDuration(r.Max), formatDuration(r.Min))
	}
	if r.Jitter < 0 || r.Jitter > 1 {
		l.add(at(n, "jitter"), key+".jitter", "must be between 0 and 1 (a fraction of the delay), got %v", r.Jitter)
	}
	if r.GiveUpAfter < 0 {
		l.add(at(n, "give_up_after"), key+".give_up_after", "must not be negative (0: never give up)")
	}
}

// kindOf reads a one-kind map ("fmp4: {…}") or a bare kind name
// ("fmp4"): the kind's key node and its options node (nil: none).
func (l *loader) kindOf(n *yaml.Node, key, what, example string) (kind, opts *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		if isNull(n) {
			break
		}
		return n, nil
	case yaml.MappingNode:
		es := l.entries(n, key)
		if len(es) == 0 {
			l.add(n, key, "expected a %s kind with its options (%s), got an empty map", what, example)
			return nil, nil
		}
		for _, e := range es[1:] {
			l.add(e.key, joinKey(key, e.key.Value), "a %s names one kind, here %q and %q (make them separate %ss)", what, es[0].key.Value, e.key.Value, what)
		}
		return es[0].key, es[0].value
	default:
		l.add(n, key, "expected a %s kind with its options (%s), got %s", what, example, describe(n))
		return nil, nil
	}
	l.add(n, key, "expected a %s kind with its options (%s), got nothing", what, example)
	return nil, nil
}

func (l *loader) source(e entry, key, path string) *SourceSpec {
	kindNode, optsNode := l.kindOf(e.value, key, "source", "fmp4: {file: clip.mp4}")
	if kindNode == nil {
		return nil
	}
	kind, ok := l.reg.Source(kindNode.Value)
	key = joinKey(key, kindNode.Value)
	if !ok {
		l.add(kindNode, key, "%s", unknownMsg("source kind", kindNode.Value, l.reg.SourceNames()))
		return nil
	}
	spec := &SourceSpec{Kind: kind, Pos: l.pos(kindNode)}
	spec.Options = l.options(kind.Options, kindNode, optsNode, key)
	if spec.Options == nil {
		return spec
	}
	if u, ok := spec.Options.(RTMPListenerUser); ok && u.UsesRTMPListener() && l.cfg.RTMP == nil {
		l.add(kindNode, key, "this source takes publishes from the shared RTMP listener: add an rtmp section (rtmp: {listen: %q})", DefaultRTMPListen)
	}
	spec.Paths = path
	if kind.Paths != nil && path != "" {
		pat, err := kind.Paths(path, spec.Options)
		if err != nil {
			l.add(at(deref(e.value), ""), key, "path %q: %s", path, err.Error())
		}
		spec.Paths = pat
	}
	return spec
}

func (l *loader) sinks(n *yaml.Node, key string) []*SinkSpec {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		l.add(n, key, "expected a list of sinks (- fmp4: {dir: recordings}), got %s", describe(n))
		return nil
	}
	var out []*SinkSpec
	for i, item := range n.Content {
		item = deref(item)
		ikey := indexKey(key, i)
		kindNode, optsNode := l.kindOf(item, ikey, "sink", "- fmp4: {dir: recordings}")
		if kindNode == nil {
			continue
		}
		kind, ok := l.reg.Sink(kindNode.Value)
		ikey = joinKey(ikey, kindNode.Value)
		if !ok {
			l.add(kindNode, ikey, "%s", unknownMsg("sink kind", kindNode.Value, l.reg.SinkNames()))
			continue
		}
		opts := l.options(kind.Options, kindNode, optsNode, ikey)
		out = append(out, &SinkSpec{Kind: kind, Options: opts, Index: i, Pos: l.pos(kindNode)})
	}
	return out
}

// options decodes a kind's options strictly into the value newOptions
// returns, then validates them; nil when they have problems.
func (l *loader) options(newOptions func() any, kindNode, n *yaml.Node, key string) any {
	opts := newOptions()
	v := reflect.ValueOf(opts)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		l.add(kindNode, key, "the kind's Options returned %T, not a pointer", opts)
		return nil
	}
	before := l.count()
	l.decode(n, v.Elem(), key)
	if l.count() > before {
		return nil
	}
	var err error
	switch val := opts.(type) {
	case DirValidator:
		err = val.ValidateDir(l.cfg.Dir())
	case Validator:
		err = val.Validate()
	}
	if err == nil {
		return opts
	}
	for _, e := range flattenJoined(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			where := fieldNode(n, fe.Field)
			if where == nil {
				where = kindNode
			}
			l.add(where, key+"."+fe.Field, "%s", fe.Err.Error())
			continue
		}
		l.add(kindNode, key, "%s", e.Error())
	}
	return nil
}

// flattenJoined lists the errors errors.Join put together, recursively.
func flattenJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenJoined(e)...)
		}
		return out
	}
	return []error{err}
}

// fieldNode finds the node of a dotted option key ("backoff.max",
// "urls[1]") under an options map: the key's node for a map key, the
// item for a list index; nil when the file does not set it.
func fieldNode(n *yaml.Node, field string) *yaml.Node {
	var found *yaml.Node
	for seg := range strings.SplitSeq(field, ".") {
		name, rest, _ := strings.Cut(seg, "[")
		if name != "" {
			found = keyNode(n, name)
			n = lookup(n, name)
		}
		for rest != "" {
			idx, after, ok := strings.Cut(rest, "]")
			i, err := strconv.Atoi(idx)
			if n = deref(n); !ok || err != nil || n == nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return found
			}
			n = deref(n.Content[i])
			found = n
			rest = strings.TrimPrefix(after, "[")
		}
		if n == nil {
			return found
		}
	}
	return found
}

// checkPublishers reports two pipelines publishing the same exact path:
// only one broadcast can live at a path.
func (l *loader) checkPublishers() {
	first := make(map[string]*Pipeline)
	for _, p := range l.cfg.Pipelines {
		if p.Source == nil || strings.HasSuffix(p.Source.Paths, "*") {
			continue
		}
		if q, dup := first[p.Source.Paths]; dup {
			l.list = append(l.list, Problem{Pos: p.Pos, Key: joinKey(joinKey("pipelines", p.Name), "path"),
				Msg: fmt.Sprintf("pipelines %q (%s) and %q both publish %q; a path holds one broadcast", q.Name, q.Pos, p.Name, p.Source.Paths)})
			continue
		}
		first[p.Source.Paths] = p
	}
}

// Dir is the directory of the configuration file, against which relative
// file names in options are resolved ("" for Parse of bytes without a
// file name).
func (c *Config) Dir() string {
	if c.File == "" {
		return ""
	}
	return filepath.Dir(c.File)
}

// formatDuration writes a duration without the zero units String adds
// ("10m" rather than "10m0s").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
