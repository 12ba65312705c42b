package repocheck

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/licenses.md from the modules TrackOps is built from")

// allowed are the licences compatible with distributing TrackOps under
// Apache-2.0: permissive ones, and MPL-2.0 (file-level copyleft, unmodified
// files used as a library). GPL, AGPL, LGPL and anything unrecognised fail.
var allowed = map[string]bool{
	"Apache-2.0": true, "MIT": true, "BSD-2-Clause": true, "BSD-3-Clause": true, "ISC": true, "MPL-2.0": true,
	// The FreeType License is BSD-style (with a credit clause); modules
	// dual-licensed FTL or GPL are taken under FTL.
	"FTL": true,
	// Creative Commons Attribution 4.0 asks for credit only (ASF Category A).
	"CC-BY-4.0": true,
}

// classify names the licence of a LICENSE file's text by its operative
// wording; copyleft is looked for first, so a dual licence with GPL counts
// as what it would impose.
func classify(text string) string {
	t := strings.Join(strings.Fields(text), " ")
	has := func(s string) bool { return strings.Contains(strings.ToLower(t), strings.ToLower(s)) }
	switch {
	case has("Creative Commons Attribution 4.0 International Public License"):
		return "CC-BY-4.0"
	case has("your choice of exactly one of") && has("The FreeType License"):
		return "FTL"
	case has("GNU AFFERO GENERAL PUBLIC LICENSE"):
		return "AGPL"
	case has("GNU LESSER GENERAL PUBLIC LICENSE"), has("GNU LIBRARY GENERAL PUBLIC LICENSE"):
		return "LGPL"
	case has("GNU GENERAL PUBLIC LICENSE"):
		return "GPL"
	case has("Apache License") && has("Version 2.0"):
		return "Apache-2.0"
	case has("Mozilla Public License Version 2.0"), has("Mozilla Public License, version 2.0"):
		return "MPL-2.0"
	case has("Permission is hereby granted, free of charge, to any person obtaining a copy"):
		return "MIT"
	case has("Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted"),
		has("Permission to use, copy, modify, and distribute this software for any purpose with or without fee is hereby granted"):
		return "ISC"
	case has("Redistribution and use in source and binary forms") && (has("Neither the name") || has("names of its contributors may be used")):
		return "BSD-3-Clause"
	case has("Redistribution and use in source and binary forms"):
		return "BSD-2-Clause"
	}
	return "unknown"
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]string{
		"Apache License\n Version 2.0, January 2004":                                                                                      "Apache-2.0",
		"Permission is hereby granted, free of charge, to any person obtaining a copy of this":                                            "MIT",
		"Redistribution and use in source and binary forms ... Neither the name of the copyright":                                         "BSD-3-Clause",
		"Redistribution and use in source and binary forms, with or without modification":                                                 "BSD-2-Clause",
		"Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted":          "ISC",
		"Mozilla Public License Version 2.0":                                                                                              "MPL-2.0",
		"GNU GENERAL PUBLIC LICENSE Version 3":                                                                                            "GPL",
		"GNU AFFERO GENERAL PUBLIC LICENSE":                                                                                               "AGPL",
		"Apache License Version 2.0 ... or, at your option, the GNU GENERAL PUBLIC LICENSE":                                               "GPL",
		"subject to your choice of exactly one of the following two licenses: The FreeType License ... or The GNU General Public License": "FTL",
		"Creative Commons Attribution 4.0 International Public License":                                                                   "CC-BY-4.0",
		"All rights reserved.": "unknown",
	} {
		if got := classify(text); got != want {
			t.Errorf("classify(%q) = %s, want %s", text, got, want)
		}
	}
}

// module is one dependency as the build sees it.
type module struct {
	path, version, dir string
	licence, file      string
}

// buildModules lists the modules compiled into TrackOps or its tests
// (go list -deps -test ./...), with their directories in the module cache.
func buildModules(t *testing.T) []module {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-test", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}\t{{.Version}}\t{{.Dir}}{{end}}{{end}}", "./...")
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	seen := map[string]module{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) == 3 {
			seen[f[0]] = module{path: f[0], version: f[1], dir: f[2]}
		}
	}
	mods := make([]module, 0, len(seen))
	for _, m := range seen {
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].path < mods[j].path })
	return mods
}

var licenceFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying)(\.(md|txt))?$`)

// findLicence reads the module's licence file, or that of the enclosing
// module of the same repository (a nested module may ship none).
func findLicence(m module, all []module) (licence, file string) {
	dirs := []string{m.dir}
	for _, o := range all {
		if o.path != m.path && strings.HasPrefix(m.path, o.path+"/") {
			dirs = append(dirs, o.dir)
		}
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() || !licenceFile.MatchString(e.Name()) {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			return classify(string(b)), e.Name()
		}
	}
	return "unknown", ""
}

// TestDependencyLicencesAreCompatible reads every build dependency's
// licence from the module cache and fails on one that is not compatible
// with Apache-2.0 or cannot be recognised; docs/licenses.md must list
// exactly these modules (go test ./internal/repocheck -run Licences -update
// rewrites it).
func TestDependencyLicencesAreCompatible(t *testing.T) {
	mods := buildModules(t)
	if len(mods) < 10 {
		t.Fatalf("only %d modules found; go list did not see the build", len(mods))
	}
	var doc strings.Builder
	doc.WriteString(licensesHeader)
	for i := range mods {
		m := &mods[i]
		m.licence, m.file = findLicence(*m, mods)
		if !allowed[m.licence] {
			t.Errorf("%s %s: licence %s (file %q) is not compatible with Apache-2.0 or not recognised", m.path, m.version, m.licence, m.file)
		}
		fmt.Fprintf(&doc, "| `%s` | %s | %s |\n", m.path, m.version, m.licence)
	}
	path := filepath.Join(repoRoot(t), "docs", "licenses.md")
	if *update {
		if err := os.WriteFile(path, []byte(doc.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(path)
	if err != nil || string(have) != doc.String() {
		t.Fatalf("docs/licenses.md does not list the modules TrackOps is built from (%v); regenerate it with\n"+
			"  go test ./internal/repocheck -run TestDependencyLicencesAreCompatible -update\nwant:\n%s", err, doc.String())
	}
}

const licensesHeader = `# Licences

TrackOps is licensed under the Apache License 2.0 (SPDX: ` + "`Apache-2.0`" + `; see [LICENSE](../LICENSE)).

Every Go module it is built from, its tests included, is listed below with the licence its licence file
carries. Only licences compatible with Apache-2.0 are accepted: Apache-2.0, MIT, BSD-2-Clause, BSD-3-Clause,
ISC and MPL-2.0. A GPL, AGPL or LGPL licence, or one the check does not recognise, fails the test
` + "`TestDependencyLicencesAreCompatible`" + ` (internal/repocheck), which also fails when this list no longer matches the
build. After changing dependencies, regenerate it:

` + "```sh\ngo test ./internal/repocheck -run TestDependencyLicencesAreCompatible -update\n```" + `

The KafkaJS client that the interop test runs (internal/e2e/testdata/kafkajs) is MIT-licensed and is not part
of the binary.

| module | version | licence |
|---|---|---|
`

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", dir, err)
	}
	return dir
}
