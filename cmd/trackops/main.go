// Command trackops runs the TrackOps platform and its operator tools.
package main

import (
	"os"

	"github.com/trackops/trackops/internal/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
