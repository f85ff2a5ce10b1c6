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
    @Option(name: .long, help: "Fixed context length of the functions (KV states hold this many positions).") var context: Int = 512
    @Option(name: .long, help: "Tokens per prefill call (default 64).") var prefillBlock: Int?
    @Option(name: .long, help: "Weight storage: fp16, int8 (blockwise, 32 input channels per scale), lut4 or lut6 (palettized per 32 output channels).")
    var weights: String = "fp16"
    @Option(name: .long, help: "Worker threads for loading (default: physical cores).") var threads: Int?

    func run() throws {
        let format = try ANEWeightFormat(parsing: weights)
        guard context > 0 else { throw ANELMError("--context must be positive, got \(context)") }
        var options = ANELoweringOptions(contextLength: context)
        if let prefillBlock { options.prefillBlock = prefillBlock }
        try CoreMLPackage.checkDestination(output)  // before the slow part
        let path = try model ?? DefaultModel.installIfNeeded().path
        let start = Date()
        printError("loading \(path)…")
        let loaded = try ModelLoader.load(path, options: LoadOptions(threads: threads))
        _ = try CoreMLPackage.export(loaded, to: output, options: options, weights: format, progress: printError)
        printError(String(format: "done in %.1f s", Date().timeIntervalSince(start)))
    }
}
