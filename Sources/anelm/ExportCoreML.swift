import ANELM
import ANELMContext
import ANELMInstall
import ArgumentParser
import Foundation

struct ExportCoreML: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-coreml",
        abstract: "Lower a model for the Neural Engine and write it as a Core ML .mlpackage (ML Program, iOS 18 / macOS 15).")

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A .gguf file or a Hugging Face folder (default: the default model); an embedding model's folder (e.g. all-MiniLM-L6-v2) "
                + "exports its sentence-embedding functions.")
    ) var model: String?
    @Option(name: .long, help: "The package to write, NAME.mlpackage (must not exist).") var output: String
    @Option(
        name: .long, help: "Fixed context length of the functions (KV states hold this many positions; a recurrent model's bound on tokens per sequence; default 512)."
    ) var context: Int?
    @Option(
        name: .long,
        help: "Embedding models: the sequence lengths, one function each, comma-separated (default 128,512; capped at the model's positions).")
    var lengths: String?
    @Flag(name: .long, help: "Export a context store's relevance model (the re-ranker) instead of a model: one function over --batch candidates.")
    var relevance = false
    @Option(name: .long, help: "With --relevance: the context store (default: <cache>/context/store.sqlite).") var store: String?
    @Option(name: .long, help: "With --relevance: the model version (default: the one in use, the newest accepted).") var relevanceVersion: Int?
    @Option(name: .long, help: "With --relevance: candidates scored per call (default 64).") var batch: Int?
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
        try CoreMLPackage.checkDestination(output)  // before the slow part
        if relevance { return try exportRelevance(format: format) }
        guard store == nil, relevanceVersion == nil, batch == nil else { throw ANELMError("--store, --relevance-version and --batch apply to --relevance") }
        let path = try model ?? DefaultModel.installIfNeeded().path
        if try isEmbeddingModel(path) { return try exportEmbedder(path, format: format) }
        guard lengths == nil else { throw ANELMError("--lengths applies to embedding models; \(path) is a language model (use --context)") }
        let context = context ?? 512
        guard context > 0 else { throw ANELMError("--context must be positive, got \(context)") }
        var options = ANELoweringOptions(contextLength: context)
        if let prefillBlock { options.prefillBlock = prefillBlock }
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

    /// The relevance model of a context store; the model options are refused, not ignored.
    func exportRelevance(format: ANEWeightFormat) throws {
        let refused = [
            ("--model", model != nil), ("--context", context != nil), ("--prefill-block", prefillBlock != nil), ("--lora", !lora.isEmpty),
            ("--lengths", lengths != nil), ("--max-package-bytes", maxPackageBytes != ANELint.maxPackageBytes),
        ]
        if let (flag, _) = refused.first(where: { $0.1 }) {
            throw ANELMError("\(flag) does not apply to --relevance (its options: --store, --relevance-version, --batch, --weights)")
        }
        let path = store ?? ContextStore.defaultPath
        let contextStore = try ContextStore(path: path, create: false)
        let chosen = try relevanceVersion ?? contextStore.relevanceVersions().last(where: \.accepted)?.version
        guard let chosen else { throw ANELMError("the store \(path) has no relevance model in use; train one with anelm context train") }
        let model = try contextStore.relevanceModel(version: chosen)
        let start = Date()
        let interrupts = removeStagedOutputsOnInterrupt()
        defer { interrupts.forEach { $0.cancel() } }
        _ = try CoreMLPackage.exportRelevance(
            model, store: path, batch: batch ?? 64, to: output, weights: format, lutGroup: lutGroup, progress: printError)
        printError(String(format: "done in %.1f s", Date().timeIntervalSince(start)))
    }

    /// The sentence-embedding functions of an embedder folder; the language-model options are refused, not ignored.
    func exportEmbedder(_ path: String, format: ANEWeightFormat) throws {
        let refused = [
            ("--context", context != nil), ("--prefill-block", prefillBlock != nil), ("--lora", !lora.isEmpty),
            ("--max-package-bytes", maxPackageBytes != ANELint.maxPackageBytes),
        ]
        if let (flag, _) = refused.first(where: { $0.1 }) {
            throw ANELMError("\(flag) applies to language models; \(path) is an embedding model (its options: --lengths, --weights, --lut-group)")
        }
        let lengths = try self.lengths.map { text in
            try text.split(separator: ",", omittingEmptySubsequences: false).map { part -> Int in
                guard let n = Int(part.trimmingCharacters(in: .whitespaces)), n > 0 else {
                    throw ANELMError("--lengths takes positive integers separated by commas, got \"\(text)\"")
                }
                return n
            }
        } ?? ANEEncoderLowering.defaultLengths
        let start = Date()
        printError("loading \(path)…")
        let interrupts = removeStagedOutputsOnInterrupt()
        defer { interrupts.forEach { $0.cancel() } }
        _ = try CoreMLPackage.exportEmbedder(
            folder: path, to: output, lengths: lengths, weights: format, lutGroup: lutGroup, threads: threads, progress: printError)
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

/// Whether `path` is a folder whose architecture is a text encoder's (an embedding model).
func isEmbeddingModel(_ path: String) throws -> Bool {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return false }
    return try ModelRegistry.family(of: .huggingFace(try HFModelFolder(path: path))).isEncoder
}
