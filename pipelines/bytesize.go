package pipelines

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// byteUnits are the units a ByteSize may carry, binary (KiB) and decimal
// (KB); a bare K, M or G is binary, as on the command line.
var byteUnits = []struct {
	suffix string
	mult   float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1},
}

// ParseByteSize reads a size: a whole number of bytes (1048576) or a
// number with a unit ("16MiB", "1.5GB", "64 KiB"; units are not case
// sensitive). Negative sizes are refused.
func ParseByteSize(s string) (ByteSize, error) {
	num, mult := strings.ToLower(strings.TrimSpace(s)), 1.0
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	bad := fmt.Errorf("expected a size like 1048576, 16MiB or 1.5GB, got %q", s)
	if num == "" {
		return 0, bad
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n < 0 || float64(n) > math.MaxInt64/mult {
			return 0, bad
		}
		return ByteSize(n * int64(mult)), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f*mult >= math.MaxInt64 {
		return 0, bad
	}
	return ByteSize(math.Round(f * mult)), nil
}

// UnmarshalYAML reads a size as ParseByteSize does.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size like 1048576, 16MiB or 1.5GB, got %s", describe(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// String writes the size with the unit that makes the number smallest
// while exact: "16MiB", "1500MB", "2TB", "1023".
func (b ByteSize) String() string {
	n := int64(b)
	best, unit := n, ""
	if n > 0 {
		for _, u := range []struct {
			name string
			mult int64
		}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}} {
			if n%u.mult == 0 && n/u.mult < best {
				best, unit = n/u.mult, u.name
			}
		}
	}
	return strconv.FormatInt(best, 10) + unit
}

// MarshalYAML writes the size as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }
