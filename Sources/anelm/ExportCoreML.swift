import ANELM
import ANELMInstall
import ArgumentParser
import Foundation

struct ExportCoreML: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-coreml",
        abstract: "Lower a model for the Neural Engine and write it as a Core ML .mlpackage (ML Program, iOS 18 / macOS 15).")

    @Option(name: .long, help: "A .gguf file or a Hugging Face folder (default: the default model).") var model: String?
    @Option(name: .long, help: "The package to write, NAME.mlpackage (must not exist).") var output: String
    @Option(name: .long, help: "Fixed context length of the functions (KV states hold this many positions; a recurrent model's bound on tokens per sequence).") var context: Int = 512
    @Option(name: .long, help: "Tokens per prefill call (default 64).") var prefillBlock: Int?
    @Option(
        name: .long,
        help:
            "Weight storage: fp16; lut4, lut6 or lut8 (palettized per group of output channels: the compression that stays on the Neural Engine); int8 (one scale per output channel); int8-blockwise (one scale per 32 input channels: falls back to the CPU)."
    )
    var weights: String = "fp16"
    @Option(name: .long, help: "LUT formats: output channels per table (default 16, Apple's guidance is 8 or 16).") var lutGroup: Int = ANEWeightFormat
        .defaultLUTGroup
    @Option(
        name: .long,
        help:
            "Most bytes of weights per package (default 1 GB: iOS refuses larger weight files); a larger model is split into consecutive chunks of layers, NAME.mlpackage, NAME-chunk2.mlpackage, …"
    )
    var maxPackageBytes: Int = ANELint.maxPackageBytes
    @Option(name: .long, help: "Worker threads for loading (default: physical cores).") var threads: Int?
    @Option(name: .long, help: ArgumentHelp("A LoRA adapter merged into the exported weights, with an optional scale (repeatable).", valueName: "path[:scale]"))
    var lora: [String] = []

    func run() throws {
        let format = try ANEWeightFormat(parsing: weights)
        guard lutGroup > 0 else { throw ANELMError("--lut-group must be positive, got \(lutGroup)") }
        guard context > 0 else { throw ANELMError("--context must be positive, got \(context)") }
        var options = ANELoweringOptions(contextLength: context)
        if let prefillBlock { options.prefillBlock = prefillBlock }
        try CoreMLPackage.checkDestination(output)  // before the slow part
        let path = try model ?? DefaultModel.installIfNeeded().path
        let start = Date()
        printError("loading \(path)…")
        // The lowering reads the model's linear weights: adapters are merged into them at load.
        let adapters = try lora.map(LoRAChoice.init(parsing:))
        let loaded = try ModelLoader.load(path, options: LoadOptions(threads: threads, lora: adapters, loraMerge: !adapters.isEmpty))
        let interrupts = removeStagedOutputsOnInterrupt()
        defer { interrupts.forEach { $0.cancel() } }
        _ = try CoreMLPackage.export(
            loaded, to: output, options: options, weights: format, lutGroup: lutGroup, maxPackageBytes: maxPackageBytes, progress: printError)
        printError(String(format: "done in %.1f s", Date().timeIntervalSince(start)))
    }
}

/// On SIGINT or SIGTERM: remove the outputs being written (their staging folders), then exit as the signal would.
/// The work happens on a dispatch queue, not in the signal handler, where removing files is not safe.
func removeStagedOutputsOnInterrupt() -> [DispatchSourceSignal] {
    [SIGINT, SIGTERM].map { number in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            StagedOutput.removeAllLive()
            printError("interrupted: nothing was written")
            exit(128 + number)
        }
        source.resume()
        return source
    }
}
