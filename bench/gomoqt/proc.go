package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
)

// What follows mirrors the harness (bench/tls.go, bench/barewire.go,
// bench/cpu_unix.go, bench/profile.go), which this module cannot import:
// the same TLS, QUIC configuration and process figures for every contender.

// quicConfig is the QUIC configuration of the moqbridge relay and of the
// bare relay: 1024 streams each way, 30 s idle timeout, 5 s keep-alive,
// datagrams and stream-reset partial delivery on.
func quicConfig() *quic.Config {
	return &quic.Config{
		MaxIncomingStreams:               1024,
		MaxIncomingUniStreams:            1024,
		MaxIdleTimeout:                   30 * time.Second,
		KeepAlivePeriod:                  5 * time.Second,
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
	}
}

// selfSigned creates a 13-day self-signed ECDSA P-256 certificate for
// 127.0.0.1 and returns it with its SHA-256 fingerprint.
func selfSigned() (tls.Certificate, [32]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, [32]byte{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"moqbridge"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(13 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, [32]byte{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, sha256.Sum256(der), nil
}

// pinnedTLS accepts exactly the certificate whose SHA-256 is fp.
func pinnedTLS(fp [32]byte, alpn string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{alpn},
		InsecureSkipVerify: true, // self-signed: the pin below is the check
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("relay sent no certificate")
			}
			if got := sha256.Sum256(raw[0]); !bytes.Equal(got[:], fp[:]) {
				return errors.New("relay certificate does not match the pinned fingerprint")
			}
			return nil
		},
	}
}

// processCPU is the user+system CPU time of this process, all threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// residentBytes is the process's resident set size (VmRSS of
// /proc/self/status), 0 where there is none.
func residentBytes() uint64 { return procStatus("VmRSS:") }

// residentPeak is the largest resident set size since the last
// residentPeak(true) (VmHWM), which then restarts the peak (bench/rss.go).
func residentPeak(reset bool) uint64 {
	peak := procStatus("VmHWM:")
	if reset {
		_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	}
	return peak
}

// procStatus reads one "kB" field of /proc/self/status, in bytes.
func procStatus(field string) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field)
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// profileEnv is the harness' ProfileEnv: a directory for <role>.cpu.pprof
// and <role>.allocs.<n>.pprof.
const profileEnv = "MOQBRIDGE_BENCH_PROFILE"

type profiler struct {
	dir, role string
	cpu       *os.File
	snapshots int
}

func startProfile(role string) (*profiler, error) {
	p := &profiler{dir: os.Getenv(profileEnv), role: role}
	if p.dir == "" {
		return p, nil
	}
	runtime.MemProfileRate = 4 << 10
	f, err := os.Create(filepath.Join(p.dir, role+".cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	p.cpu = f
	return p, nil
}

func (p *profiler) snapshot() error {
	if p.dir == "" {
		return nil
	}
	runtime.GC()
	p.snapshots++
	f, err := os.Create(filepath.Join(p.dir, fmt.Sprintf("%s.allocs.%d.pprof", p.role, p.snapshots)))
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (p *profiler) stop() {
	if p.cpu == nil {
		return
	}
	pprof.StopCPUProfile()
	_ = p.cpu.Close()
}
