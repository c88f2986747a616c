package rtpbench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/bench"
)

// CacheEnv names the directory where the generated clips are kept between
// runs; default: moqbridge-rtpbench in the user's cache directory
// (os.UserCacheDir), else in the temporary directory.
const CacheEnv = "MOQBRIDGE_RTPBENCH_CACHE"

// processTimeout bounds starting and stopping a child process.
const processTimeout = 15 * time.Second

// clipSpec is a pre-encoded test clip in Matroska: ffmpeg's testsrc2
// pattern and a sine tone, H.264 Main without B-frames (x264 veryfast, a
// keyframe every second, no scene cuts, constant bitrate), as an IP
// camera or a low-latency encoder sends it, and Opus in 20 ms packets.
// The sender copies it onto RTP in real time (-re), so that its own CPU
// is small and no encoder competes with what is measured.
type clipSpec struct {
	width, height, fps int
	videoKbps          int
	seconds            int
}

// args is the ffmpeg command line (without the program name) that writes
// the clip to out.
func (s clipSpec) args(out string) []string {
	kbps := func(n int) string { return strconv.Itoa(n) + "k" }
	return []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d", s.width, s.height, s.fps),
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", strconv.Itoa(s.seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p", "-bf", "0",
		"-b:v", kbps(s.videoKbps), "-maxrate", kbps(s.videoKbps), "-bufsize", kbps(2 * s.videoKbps),
		"-g", strconv.Itoa(s.fps), "-keyint_min", strconv.Itoa(s.fps), "-sc_threshold", "0",
		"-c:a", "libopus", "-b:a", "96k", "-ar", "48000", "-ac", "2", "-frame_duration", "20",
		"-f", "matroska", out}
}

// name is the cache file name: the shape and a hash of the command line,
// so that a changed command makes a new file.
func (s clipSpec) name() string {
	sum := sha256.Sum256([]byte(strings.Join(s.args("OUT"), "\x00")))
	return fmt.Sprintf("clip-%dp%d-%dk-%ds-%s.mkv", s.height, s.fps, s.videoKbps, s.seconds, hex.EncodeToString(sum[:4]))
}

// ensureClip returns the path of the clip, encoding it with ffmpeg if the
// cache does not hold it yet (20 s of 720p take a few seconds).
func ensureClip(s clipSpec) (string, error) {
	path, _, err := bench.CachedFFmpeg(bench.CacheDir(CacheEnv, "moqbridge-rtpbench"), s.name(), s.args)
	return path, err
}

// senderArgs is the command line of the RTP sender (hang-format.md §6.2,
// copying the clip instead of encoding): the video to in[0] with its RTCP
// to in[1], the audio to in[2] and in[3], 1200-byte packets, fixed SSRCs,
// and the SDP written to sdpFile when it is not "". rate is -readrate (1:
// real time, as -re).
func senderArgs(clip string, in []netip.AddrPort, sdpFile, rate string) []string {
	url := func(rtp, rtcp netip.AddrPort) string {
		return fmt.Sprintf("rtp://%s?pkt_size=1200&rtcpport=%d", rtp, rtcp.Port())
	}
	a := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-readrate", rate, "-i", clip,
		"-map", "0:v:0", "-c", "copy", "-payload_type", "96", "-ssrc", "1111", "-f", "rtp", url(in[0], in[1]),
		"-map", "0:a:0", "-c", "copy", "-payload_type", "111", "-ssrc", "2222", "-f", "rtp", url(in[2], in[3])}
	if sdpFile != "" {
		a = append(a, "-sdp_file", sdpFile)
	}
	return a
}

// senderSDP is the session description the sender announces for the clip:
// ffmpeg writes it as it starts, so a run of a fraction of a second to
// sockets of this process that nobody reads gives it (its ports are those
// sockets', which the receivers' copies replace).
func senderSDP(ctx context.Context, clip, dir string) (string, error) {
	var in []netip.AddrPort
	for range 4 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return "", err
		}
		defer c.Close()
		in = append(in, c.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	file := filepath.Join(dir, "sender.sdp")
	args := append([]string{"-t", "0.1"}, senderArgs(clip, in, file, "100")...)
	if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ffmpeg writing the SDP: %w\n%s", err, out)
	}
	b, err := os.ReadFile(file)
	return string(b), err
}

var mediaLine = regexp.MustCompile(`(?m)^m=(\w+) \d+ `)

// sdpWithPorts is the session description with the port of each m= line
// replaced, in order (RTCP then goes to port + 1).
func sdpWithPorts(sdp string, ports []int) (string, error) {
	i := 0
	out := mediaLine.ReplaceAllStringFunc(sdp, func(m string) string {
		kind := mediaLine.FindStringSubmatch(m)[1]
		if i >= len(ports) {
			i++
			return m
		}
		i++
		return fmt.Sprintf("m=%s %d ", kind, ports[i-1])
	})
	if i != len(ports) {
		return "", fmt.Errorf("the SDP has %d media, want %d", i, len(ports))
	}
	return out, nil
}

// freeUDPRuns returns n even UDP ports free on 127.0.0.1 right now, each
// followed by length-1 more free ports (RTP and RTCP for a receiver that
// takes its ports from an SDP, as ffmpeg does: length 2; the four ports of
// an RTP sink's two media: length 4). The runs do not overlap.
func freeUDPRuns(n, length int) ([]int, error) {
	var held []*net.UDPConn // kept bound until every run is found
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	bind := func(port int) *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			return nil
		}
		return c
	}
	var bases []int
	for tries := 0; len(bases) < n; tries++ {
		if tries == 200 {
			return nil, fmt.Errorf("no %d runs of %d free UDP ports", n, length)
		}
		c := bind(0)
		if c == nil {
			return nil, errors.New("no free UDP port")
		}
		base := c.LocalAddr().(*net.UDPAddr).Port &^ 1
		_ = c.Close()
		var run []*net.UDPConn
		for p := base; p < base+length; p++ {
			c := bind(p)
			if c == nil {
				break
			}
			run = append(run, c)
		}
		held = append(held, run...)
		if len(run) == length {
			bases = append(bases, base)
		}
	}
	return bases, nil
}

// udpBound reports whether some process has a UDP socket bound to port
// (on any IPv4 address), from /proc/net/udp: whether a receiver started
// as a child process listens yet.
func udpBound(port int) bool {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X", port)
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasSuffix(f[1], want) {
			return true
		}
	}
	return false
}

// streamPackets counts the packets of the first video and the first audio
// stream of a media file with ffprobe.
func streamPackets(path string) (video, audio int, err error) {
	for _, st := range []struct {
		sel string
		n   *int
	}{{"v:0", &video}, {"a:0", &audio}} {
		b, err := exec.Command("ffprobe", "-v", "error", "-select_streams", st.sel, "-count_packets",
			"-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path).Output()
		if err != nil {
			return 0, 0, fmt.Errorf("ffprobe %s: %w", path, err)
		}
		s := strings.TrimSuffix(strings.TrimSpace(string(b)), ",")
		if s == "" {
			continue // no such stream
		}
		if *st.n, err = strconv.Atoi(s); err != nil {
			return 0, 0, fmt.Errorf("ffprobe %s: packets %q", path, s)
		}
	}
	return video, audio, nil
}
