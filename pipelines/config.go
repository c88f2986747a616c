package pipelines

import (
	"time"
)

// Config is a parsed and validated configuration file. Load and Parse
// make one; every field holds its default where the file is silent.
type Config struct {
	// File is the file it was read from ("" for Parse of bytes).
	File string
	// Server is the built-in MOQ Lite relay ("server:").
	Server ServerConfig
	// RTMP is the shared RTMP listener ("rtmp:"); nil when the file has
	// no such section.
	RTMP *RTMPConfig
	// Admin serves /metrics, /healthz and /readyz ("admin:").
	Admin AdminConfig
	// Log is the log output ("log:").
	Log LogConfig
	// Pipelines are the file's pipelines in file order ("pipelines:", a
	// map keyed by name).
	Pipelines []*Pipeline
}

// ServerConfig is the "server:" section: the built-in relay.
type ServerConfig struct {
	// Enabled runs the relay (default true); false runs the pipelines on
	// an Origin nobody outside the process reaches.
	Enabled bool `yaml:"enabled"`
	// Listen is the UDP address of QUIC and WebTransport (default ":4443").
	Listen string `yaml:"listen"`
	// TCP serves the same port over TCP: "http" (default), "https", "off".
	TCP string `yaml:"tcp"`
	// Cert and Key are PEM files; both empty: a generated development
	// certificate.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Auth enables JWT auth when it names keys or secrets.
	Auth AuthConfig `yaml:"auth"`
	// AllowOrigins restricts browser origins (empty: any).
	AllowOrigins []string `yaml:"allow_origins"`
	// IdleTimeout and KeepAlive: a peer's liveness (protocol.Liveness;
	// 0 takes protocol.DefaultLiveness).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	KeepAlive   time.Duration `yaml:"keep_alive"`
	// Limits bound what peers may make the relay hold.
	Limits LimitsConfig `yaml:"limits"`
}

// AuthConfig is "server.auth".
type AuthConfig struct {
	// Keys are JWK / JWK set / PEM files of verification keys.
	Keys []string `yaml:"keys"`
	// Secrets are raw HMAC secret files.
	Secrets []string `yaml:"secrets"`
	// Public is the path prefix open without a token; nil: none.
	Public *string `yaml:"public"`
}

// LimitsConfig is "server.limits"; zero takes protocol's defaults.
type LimitsConfig struct {
	MaxSessions        int      `yaml:"max_sessions"`
	MaxSessionsPerAddr int      `yaml:"max_sessions_per_addr"`
	MaxPending         int      `yaml:"max_pending"`
	MaxStreams         int      `yaml:"max_streams"`
	MaxSessionBuffer   ByteSize `yaml:"max_session_buffer"`
	MaxServerBuffer    ByteSize `yaml:"max_server_buffer"`
	MaxGroupSize       ByteSize `yaml:"max_group_size"`
}

// RTMPConfig is the "rtmp:" section: one RTMP listener shared by every
// pipeline whose source is rtmp, each taking the publishes of its
// application.
type RTMPConfig struct {
	// Listen is the TCP address of plain RTMP (default ":1935"; "" with
	// RTMPS set: none).
	Listen string `yaml:"listen"`
	// RTMPS is the TCP address of RTMPS, with the relay's certificate
	// ("": none).
	RTMPS string `yaml:"rtmps"`
	// MaxConns and MaxConnsPerAddr bound connections (0: the defaults of
	// sources/rtmp; -1: no limit).
	MaxConns        int `yaml:"max_conns"`
	MaxConnsPerAddr int `yaml:"max_conns_per_addr"`
}

// AdminConfig is the "admin:" section.
type AdminConfig struct {
	// Listen is the TCP address of /metrics, /healthz and /readyz
	// (default "127.0.0.1:9090"; "" turns them off).
	Listen string `yaml:"listen"`
}

// LogConfig is the "log:" section.
type LogConfig struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is text (default) or json.
	Format string `yaml:"format"`
}

// Pipeline is one entry of "pipelines:".
type Pipeline struct {
	// Name is its key under "pipelines:".
	Name string
	// Source is what publishes its broadcasts; nil when From is set.
	Source *SourceSpec
	// Path is where Source publishes: an exact path, or a template a
	// listener kind fills (rtmp: "live/{key}").
	Path string
	// From is a path pattern ("live/*", or exact) of broadcasts already
	// in the Origin that the pipeline's sinks take; "" when Source is set.
	From string
	// Sinks attach to every broadcast the pipeline yields.
	Sinks []*SinkSpec
	// Restart is the supervision policy of its source and sinks.
	Restart RestartPolicy
	// Fingerprint is a canonical form of the pipeline's configuration
	// after ${VAR} expansion: equal fingerprints mean an unchanged
	// pipeline, which a reload leaves running.
	Fingerprint string
	// Pos is where the pipeline's key is in the file.
	Pos Position
}

// Yields is the path pattern of the broadcasts the pipeline's sinks
// attach to: From, or what its source publishes.
func (p *Pipeline) Yields() string {
	if p.Source == nil {
		return p.From
	}
	return p.Source.Paths
}

// SourceSpec is a pipeline's source: a registered kind and its options.
type SourceSpec struct {
	Kind    SourceKind
	Options any // what Kind.Options returned, decoded and validated
	// Paths is the pattern of the paths it publishes (Kind.Paths).
	Paths string
	Pos   Position
}

// SinkSpec is one item of a pipeline's sinks.
type SinkSpec struct {
	Kind    SinkKind
	Options any
	Index   int
	Pos     Position
}

// RestartPolicy is how a failed source or sink is restarted: after
// Min, doubling up to Max, with ±Jitter (a fraction); GiveUpAfter > 0
// stops retrying a part that kept failing that long (0: never). A
// permanent error (sdk.IsPermanent) is never retried.
type RestartPolicy struct {
	Min         time.Duration `yaml:"min"`
	Max         time.Duration `yaml:"max"`
	Jitter      float64       `yaml:"jitter"`
	GiveUpAfter time.Duration `yaml:"give_up_after"`
}

// Position is a place in a config file, 1-based.
type Position struct {
	File      string
	Line, Col int
}

// ByteSize is a size in bytes written as a number or with a unit (KiB,
// MiB, GiB, KB, MB, GB).
type ByteSize int64
