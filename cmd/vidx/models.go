package main

import (
	"context"
	"fmt"
	"io"

	"github.com/vidx/vidx/encoders/testmodels"
)

const modelsUsage = `Usage:
  vidx models testdata DIR         write the small generated test model bundles
  vidx models inspect DIR          show a bundle and check it against its ONNX models
  vidx models pull URL|NAME DIR    download a model bundle with checksum verification
  vidx models quantize SRC DST     copy a bundle with int8 image and text models (ONNX Runtime's quantizer)
`

func cmdModels(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, modelsUsage)
		return errUsage
	}
	switch args[0] {
	case "testdata":
		if len(args) != 2 {
			break
		}
		if err := testmodels.WriteAll(args[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s/color (colour-aware pair) and %s/tiny-clip (small ViT + text transformer)\n", args[1], args[1])
		return nil
	case "inspect":
		return cmdModelsInspect(ctx, args[1:], stdout, stderr)
	case "pull":
		return cmdModelsPull(ctx, args[1:], stdout, stderr)
	case "quantize":
		return cmdModelsQuantize(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, modelsUsage)
	return errUsage
}
