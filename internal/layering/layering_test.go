package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const module = "github.com/moqbridge/moqbridge"

// pkg is what go list reports of one package.
type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
	Error      *struct{ Err string }
}

// graph is the import graph of some packages and all their dependencies,
// without test files.
type graph map[string]*pkg

// loadGraph runs go list -deps on patterns from the module root.
func loadGraph(t *testing.T, patterns ...string) graph {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the layering test needs the go command: %v", err)
	}
	root, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	args := append([]string{"list", "-e", "-deps", "-json=ImportPath,Imports,Standard,Error"}, patterns...)
	cmd := exec.Command(goBin, args...)
	cmd.Dir = strings.TrimSpace(string(root))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	g := graph{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := &pkg{}
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		g[p.ImportPath] = p
	}
	return g
}

// ours returns the module's packages in g, sorted, whose path (relative to
// the module) is dir or under it.
func (g graph) ours(dir string) []string {
	var out []string
	for path := range g {
		rel, ok := strings.CutPrefix(path, module+"/")
		if ok && (rel == dir || strings.HasPrefix(rel, dir+"/")) {
			out = append(out, path)
		}
	}
	sort.Strings(out)
	return out
}

// chains returns, for every package reachable from from that forbidden
// matches, the shortest import chain from from to it (breadth first, so
// each chain is a shortest one and each forbidden package is reported
// once, where it first enters).
func (g graph) chains(from string, forbidden func(string) bool) [][]string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	var found [][]string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p != from && forbidden(p) {
			var chain []string
			for q := p; q != ""; q = prev[q] {
				chain = append(chain, q)
			}
			for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
				chain[i], chain[j] = chain[j], chain[i]
			}
			found = append(found, chain)
			continue // what it imports is its own matter
		}
		node := g[p]
		if node == nil {
			continue
		}
		imports := append([]string(nil), node.Imports...)
		sort.Strings(imports)
		for _, q := range imports {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return found
}

// short drops the module prefix from the module's package paths.
func short(path string) string {
	if rel, ok := strings.CutPrefix(path, module+"/"); ok {
		return rel
	}
	return path
}

func chainString(chain []string) string {
	parts := make([]string, len(chain))
	for i, p := range chain {
		parts[i] = short(p)
	}
	return strings.Join(parts, " → ")
}

// under reports whether path is prefix or a package under it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// adapter returns the adapter a package belongs to ("sources/rtmp"), or "".
func adapter(path string) string {
	rel, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	parts := strings.Split(rel, "/")
	if len(parts) < 2 || (parts[0] != "sources" && parts[0] != "sinks") {
		return ""
	}
	return parts[0] + "/" + parts[1]
}

// The QUIC stack and the other network libraries a media package must not
// build.
var networkLibraries = []string{
	"github.com/quic-go/quic-go",
	"github.com/quic-go/webtransport-go",
	"github.com/coder/websocket",
	"github.com/golang-jwt/jwt",
}

func networkLibrary(path string) bool {
	for _, prefix := range networkLibraries {
		if under(path, prefix) {
			return true
		}
	}
	return false
}

// networkCode is a network library or the standard library's network,
// HTTP and TLS packages.
func networkCode(path string) bool {
	return networkLibrary(path) || path == "net" || under(path, "net/http") || under(path, "crypto/tls")
}

func TestLayering(t *testing.T) {
	g := loadGraph(t, "./moq/...", "./sdk/...", "./sources/...", "./sinks/...")
	check := func(rule string, from []string, forbidden func(string) bool) {
		t.Helper()
		if len(from) == 0 {
			t.Errorf("%s: no package to check", rule)
		}
		for _, p := range from {
			for _, chain := range g.chains(p, forbidden) {
				t.Errorf("%s: %s", rule, chainString(chain))
			}
		}
	}

	var adapters []string
	adapters = append(adapters, g.ours("sources")...)
	adapters = append(adapters, g.ours("sinks")...)
	for _, p := range adapters {
		own := adapter(p)
		check("an adapter imports no other adapter", []string{p}, func(q string) bool {
			a := adapter(q)
			return a != "" && a != own
		})
	}

	check("the model imports no network code", g.ours("moq"), networkCode)

	check("sdk imports no protocol package", g.ours("sdk"), func(q string) bool {
		return under(q, module+"/protocol")
	})

	// The MOQ adapters (sources/moq, sinks/moq) are the exception: MOQ
	// over the network is what they adapt, through package protocol.
	var media []string
	media = append(media, g.ours("sdk")...)
	for _, p := range adapters {
		if a := adapter(p); a != "sources/moq" && a != "sinks/moq" {
			media = append(media, p)
		}
	}
	check("sdk and the sources and sinks of other protocols than MOQ build without the QUIC stack, WebSocket or JWT", media, networkLibrary)
}

// TestLayeringRules checks that each rule's matcher and the chain search
// catch what they are meant to, on a made-up graph.
func TestLayeringRules(t *testing.T) {
	m := func(rel string) string { return module + "/" + rel }
	g := graph{
		m("sinks/rtmp"):              {Imports: []string{"fmt", m("internal/flv")}},
		m("internal/flv"):            {Imports: []string{m("sources/rtmp/amf")}},
		m("sources/rtmp/amf"):        {Imports: []string{"net"}},
		m("moq"):                     {Imports: []string{"sync", m("protocol")}},
		m("protocol"):                {Imports: []string{"github.com/quic-go/quic-go"}},
		"github.com/quic-go/quic-go": {Imports: []string{"crypto/tls"}},
	}
	got := g.chains(m("sinks/rtmp"), func(q string) bool { a := adapter(q); return a != "" && a != "sinks/rtmp" })
	if len(got) != 1 || chainString(got[0]) != "sinks/rtmp → internal/flv → sources/rtmp/amf" {
		t.Errorf("adapter chain %v", got)
	}
	got = g.chains(m("moq"), networkCode)
	if len(got) != 1 || chainString(got[0]) != "moq → protocol → github.com/quic-go/quic-go" {
		t.Errorf("network chain %v", got)
	}
	for path, want := range map[string]bool{
		"net": true, "net/http": true, "net/http/httptrace": true, "crypto/tls": true,
		"net/url": false, "net/netip": false, "crypto/sha256": false,
		"github.com/golang-jwt/jwt/v5": true, "github.com/coder/websocket": true,
		"github.com/quic-go/webtransport-go": true, "github.com/quic-go/qpack": false,
	} {
		if networkCode(path) != want {
			t.Errorf("networkCode(%q) = %v, want %v", path, !want, want)
		}
	}
	if a := adapter(m("sources/fmp4/internal/x")); a != "sources/fmp4" {
		t.Errorf("adapter of a subpackage: %q", a)
	}
	if a := adapter(m("sdk")); a != "" {
		t.Errorf("sdk is an adapter: %q", a)
	}
}
