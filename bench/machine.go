package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/stat: USER_HZ, 100 on Linux (getconf
// CLK_TCK).
const clockTick = 10 * time.Millisecond

// MachineBusy is the CPU time all processes on the machine have used since
// boot, from the first line of /proc/stat (0 where there is none). Set
// against the relay's and this process's own CPU it shows how much other
// work shared the machine during a measurement.
func MachineBusy() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range fields[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		// Fields: user nice system idle iowait irq softirq steal
		// guest guest_nice; idle and iowait are not work, and guest
		// time is already counted in user.
		switch i {
		case 3, 4, 8, 9:
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick
}
