// Package docs holds the project's documents; its test keeps the package
// picture in architecture.md true to the code.
package docs

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/vidx/vidx/"

// layers reads the numbered rows of the package picture: package -> row.
func layers(t *testing.T) map[string]int {
	t.Helper()
	f, err := os.Open("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile(`^(\d+)\s+(.*)$`)
	cont := regexp.MustCompile(`^\s{2,}(\S.*)$`)
	name := regexp.MustCompile(`^[a-z][a-z0-9/]*$`)
	out := map[string]int{}
	in, layer := false, -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## Packages") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if strings.HasPrefix(line, "| package") {
			break
		}
		var rest string
		if m := row.FindStringSubmatch(line); m != nil {
			layer = int(m[1][0] - '0')
			rest = m[2]
		} else if m := cont.FindStringSubmatch(line); m != nil && layer >= 0 {
			rest = m[1]
		} else {
			continue
		}
		// Names come first on a row, a description after a wide gap.
		for _, field := range strings.Fields(strings.SplitN(rest, "     ", 2)[0]) {
			if name.MatchString(field) {
				out[field] = layer
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no package picture found under ## Packages in architecture.md")
	}
	return out
}

// TestPackagePicture checks every package with code is in the picture and
// imports only packages on lower rows.
func TestPackagePicture(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH")
	}
	rows := layers(t)
	cmd := exec.Command("go", "list", "-f", `{{if .GoFiles}}{{.ImportPath}}|{{join .Imports ","}}{{end}}`, "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, "|")
		pkg = strings.TrimPrefix(pkg, module)
		if pkg == "docs" || pkg == "" {
			continue
		}
		from, ok := rows[pkg]
		if !ok {
			t.Errorf("package %s is not in the picture in docs/architecture.md", pkg)
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			imp = strings.TrimPrefix(imp, module)
			to, ok := rows[imp]
			if ok && to >= from {
				t.Errorf("%s (row %d) imports %s (row %d): the picture says imports point down", pkg, from, imp, to)
			}
		}
	}
}
