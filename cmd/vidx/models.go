package main

import (
	"fmt"
	"io"

	"github.com/vidx/vidx/encoders/testmodels"
)

func cmdModels(args []string, stdout, stderr io.Writer) error {
	if len(args) == 2 && args[0] == "testdata" {
		if err := testmodels.WriteAll(args[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s/color (colour-aware pair) and %s/tiny-clip (small ViT + text transformer)\n", args[1], args[1])
		return nil
	}
	fmt.Fprint(stderr, "Usage: vidx models testdata DIR\n")
	return errUsage
}
