package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Process accounting from /proc. A "proxy" is a process tree: nginx's master and its
// workers, or one skein or HAProxy process. CPU is user+system time summed over the
// tree; memory is the largest process's RSS plus the private (unshared) memory of the
// others, so pages the workers share with their master are counted once.

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// tree returns pid and its descendants that are alive now.
func tree(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := ppid(p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statFields returns the fields of /proc/PID/stat after the command name.
func statFields(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil, false
	}
	return strings.Fields(s[i+2:]), true
}

func ppid(pid int) (int, bool) {
	f, ok := statFields(pid)
	if !ok || len(f) < 2 {
		return 0, false
	}
	p, err := strconv.Atoi(f[1])
	return p, err == nil
}

// cpuSeconds is the user+system CPU time of the process trees rooted at pids. Children
// that exited are not counted (the proxies measured keep their workers for the run).
func cpuSeconds(roots []int) float64 {
	var total float64
	for _, root := range roots {
		for _, pid := range tree(root) {
			f, ok := statFields(pid)
			if !ok || len(f) < 13 {
				continue
			}
			utime, _ := strconv.ParseFloat(f[11], 64)
			stime, _ := strconv.ParseFloat(f[12], 64)
			total += (utime + stime) / clockTicks
		}
	}
	return total
}

// memoryMB is the memory of one proxy's process tree (see the file comment).
func memoryMB(root int) float64 { return treeMemoryKB(root) / 1024 }

func treeMemoryKB(root int) float64 {
	type m struct{ rss, private float64 }
	var ms []m
	for _, pid := range tree(root) {
		ms = append(ms, m{statusKB(pid, "VmRSS:"), smapsKB(pid, "Private_Clean:") + smapsKB(pid, "Private_Dirty:")})
	}
	best := -1
	for i := range ms {
		if best < 0 || ms[i].rss > ms[best].rss {
			best = i
		}
	}
	if best < 0 {
		return 0
	}
	total := ms[best].rss
	for i := range ms {
		if i != best {
			total += ms[i].private
		}
	}
	return total
}

func statusKB(pid int, key string) float64 {
	return fieldKB(fmt.Sprintf("/proc/%d/status", pid), key)
}

func smapsKB(pid int, key string) float64 {
	return fieldKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), key)
}

func fieldKB(path, key string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb
		}
	}
	return 0
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}
