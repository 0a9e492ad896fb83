package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rssKiB reads the resident set size of process pid from /proc.
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// BenchmarkIdleRSS starts the server binary (built without -race) with the
// embedded defaults, lets it settle idle, and reports its resident memory.
func BenchmarkIdleRSS(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s := startBinary(b, false)
		// Let start-up garbage be collected and the consumers settle.
		time.Sleep(5 * time.Second)
		kib, err := rssKiB(s.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(kib)/1024, "MiB_RSS")
	}
}
