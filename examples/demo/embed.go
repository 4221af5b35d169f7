// Package demo is skein's built-in example mesh: a frontend calling a catalog (two
// versions behind a canary route and a 90/10 split) that calls an inventory, plus a
// TCP echo, a steady load client, and an idle client for `skein exec`. The YAML files
// are written as users write theirs; `skein up` with no folder extracts and runs them.
package demo

import "embed"

// FS holds the example's YAML files, at its root.
//
//go:embed *.yaml
var FS embed.FS
