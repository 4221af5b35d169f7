package capture

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs one command with stdin and returns its combined output. Apply and
// Cleanup use it for iptables-save and iptables-restore, so callers choose where they
// run: here (an init container, already in the pod's namespace) or inside a named
// namespace (InNetns).
type Runner func(ctx context.Context, stdin string, args ...string) (string, error)

// Local runs commands in this process's network namespace.
func Local(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// InNetns runs commands inside a named namespace with `ip netns exec`.
func InNetns(name string) Runner {
	return func(ctx context.Context, stdin string, args ...string) (string, error) {
		return Local(ctx, stdin, append([]string{"ip", "netns", "exec", name}, args...)...)
	}
}

// Apply installs c's rules, replacing skein rules already there (so it can be run
// again) and keeping everyone else's: it reads the nat table, drops the SKEIN_ chains
// and the jumps to them, appends c's rules and restores the table in one transaction.
func Apply(ctx context.Context, run Runner, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if run == nil {
		run = Local
	}
	current, err := run(ctx, "", "iptables-save", "-t", "nat")
	if err != nil {
		return err
	}
	input := merge(current, c.Rules())
	if _, err := run(ctx, input, "iptables-restore", "-w", "5"); err != nil {
		return fmt.Errorf("installing capture rules: %w", err)
	}
	return nil
}

// Cleanup removes every skein capture rule and chain from the nat table.
func Cleanup(ctx context.Context, run Runner) error {
	if run == nil {
		run = Local
	}
	current, err := run(ctx, "", "iptables-save", "-t", "nat")
	if err != nil {
		return err
	}
	if !strings.Contains(current, chainPrefix) {
		return nil
	}
	if _, err := run(ctx, merge(current, ""), "iptables-restore", "-w", "5"); err != nil {
		return fmt.Errorf("removing capture rules: %w", err)
	}
	return nil
}

// Installed reports whether skein capture rules are in the nat table.
func Installed(ctx context.Context, run Runner) (bool, error) {
	if run == nil {
		run = Local
	}
	current, err := run(ctx, "", "iptables-save", "-t", "nat")
	return strings.Contains(current, chainPrefix), err
}

// merge returns a complete nat table for iptables-restore: the chains and rules of
// saved (iptables-save -t nat output) without any skein ones, plus rules (Rules output,
// or "" to only remove).
func merge(saved, rules string) string {
	var decls, body []string
	sc := bufio.NewScanner(strings.NewReader(saved))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#") || line == "*nat" || line == "COMMIT":
		case strings.Contains(line, chainPrefix):
		case strings.HasPrefix(line, ":"):
			decls = append(decls, line)
		default:
			body = append(body, line)
		}
	}
	var ruleDecls, ruleBody []string
	sc = bufio.NewScanner(strings.NewReader(rules))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" || line == "*nat" || line == "COMMIT":
		case strings.HasPrefix(line, ":"):
			ruleDecls = append(ruleDecls, line)
		default:
			ruleBody = append(ruleBody, line)
		}
	}
	if len(decls) == 0 {
		decls = []string{":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"}
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, group := range [][]string{decls, ruleDecls, body, ruleBody} {
		for _, l := range group {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
