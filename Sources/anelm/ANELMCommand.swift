import ANELM
import ANELMCoreML
import ANELMInstall
import ArgumentParser
import Foundation

@main
struct ANELMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "anelm",
        abstract: "Run small language models on-device: GGUF and Hugging Face models, on the CPU or the Neural Engine.",
        subcommands: [
            Generate.self, Chat.self, Tokenize.self, Info.self, Bench.self, Serve.self, ExportCoreML.self, Convert.self, PerplexityCommand.self, Embed.self,
            Index.self, Search.self, Ask.self, Feedback.self, Context.self,
        ])

    /// Every failure ends as one line on stderr and exit code 1, never a crash dump.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as ANELMError {
            fail(error.message)
        } catch let error as CocoaError {
            fail(error.localizedDescription)  // a file that could not be read or written, said as Foundation says it
        } catch let error as POSIXError {
            fail(error.localizedDescription)
        } catch {
            exit(withError: error)
        }
    }
}

/// One `error:` line (control characters escaped, as ANELMError does) and exit code 1.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(ANELMError(message).message)\n".utf8))
    Foundation.exit(1)
}

/// Options shared by the commands that load a model.
struct ModelOptions: ParsableArguments {
    @Option(
        name: [.customLong("model")],
        help: "A .gguf file or a Hugging Face folder (default: SmolLM2-135M-Instruct, installed on first use). serve takes several.")
    var models: [String] = []

    /// The one model of the commands that take one.
    var model: String? {
        get throws {
            guard models.count <= 1 else { throw ANELMError("give one --model (only serve takes several)") }
            return models.first
        }
    }

    @Option(name: .long, parsing: .unconditional, help: "Worker threads (default: physical cores; at most the cores this machine has).")
    var threads: Int?

    @Option(name: .long, help: "auto (weights as stored, fast), f32 (every weight dequantized, reference-exact) or ggml (weights as stored, activations rounded as llama.cpp rounds them).")
    var precision: String = "auto"

    @Option(name: .long, parsing: .unconditional, help: "Maximum context length in tokens (default: the model's).")
    var context: Int?

    @Option(name: .long, help: "cpu (anelm's kernels) or coreml (a package made by export-coreml, run by Core ML with the Neural Engine; macOS 15 / iOS 18).")
    var backend: Backend = .cpu

    @OptionGroup var loraOptions: LoRAOptions

    enum Backend: String, ExpressibleByArgument, CaseIterable {
        case cpu, coreml
    }

    func modelPath() throws -> String {
        if let model = try model { return model }
        return try DefaultModel.installIfNeeded().path
    }

    func load() throws -> LoadedModel {
        if backend == .coreml { return try loadCoreML() }
        return try load(path: try modelPath())
    }

    /// The model at `path`, with these options (CPU backend).
    func load(path: String) throws -> LoadedModel {
        guard let p = Precision(rawValue: precision) else {
            throw ANELMError("--precision must be one of: \(Precision.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if let threads, threads > cores {
            printError("warning: --threads \(threads) is more than the \(cores) cores this machine has; using \(cores)")
        }
        let options = LoadOptions(
            precision: p, threads: threads.map { min($0, cores) }, contextLength: context, lora: try loraOptions.choices(), loraMerge: loraOptions.loraMerge)
        let loaded = try ModelLoader.load(path, options: options)
        if let context, context > loaded.model.contextLength {
            printError(
                "warning: --context \(context) is longer than the \(loaded.model.contextLength) positions the model was trained for; using \(loaded.model.contextLength)"
            )
        }
        return loaded
    }

    /// An exported .mlpackage on Core ML; the package fixes precision, context and compute placement.
    func loadCoreML() throws -> LoadedModel {
        guard precision == "auto", threads == nil, context == nil, loraOptions.lora.isEmpty, !loraOptions.loraMerge else {
            throw ANELMError(
                "--precision, --threads, --context and --lora apply to --backend cpu; a Core ML package fixes them when exported (export-coreml --lora)")
        }
        guard let model = try model else { throw ANELMError("--backend coreml needs --model PATH.mlpackage (made by anelm export-coreml)") }
        #if canImport(CoreML)
            guard #available(macOS 15.0, iOS 18.0, *) else { throw ANELMError("--backend coreml needs macOS 15 or iOS 18 (Core ML states)") }
            return try ModelLoader.loadCoreML(model)
        #else
            throw ANELMError("--backend coreml needs Core ML (macOS 15 / iOS 18), which this build does not have; use --backend cpu")
        #endif
    }
}

/// `--lora PATH[:SCALE]` (repeatable) and `--lora-merge`.
struct LoRAOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "A LoRA adapter to apply, with an optional scale (repeatable): a PEFT folder, an MLX-LM folder or a llama.cpp GGUF adapter.",
            valueName: "path[:scale]"))
    var lora: [String] = []

    @Flag(name: .long, help: "Add the adapters into the weights at load (faster; adapted weights become f32, scales fixed).")
    var loraMerge = false

    func choices() throws -> [LoRAChoice] {
        guard !loraMerge || !lora.isEmpty else { throw ANELMError("--lora-merge needs at least one --lora") }
        return try lora.map(LoRAChoice.init(parsing:))
    }
}

/// Options that shape sampling and stopping. A sampling flag not given takes the model's default
/// (`SamplingParameters.defaults(for:)`: its generation_config, else the documented defaults).
struct SamplingOptions: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: "Tokens to generate at most.") var maxTokens: Int = 256
    @Option(name: .long, parsing: .unconditional, help: "0 = greedy (default: the model's, else 0.8).") var temperature: Float?
    @Option(name: .long, parsing: .unconditional, help: "0 keeps all (default: the model's, else 40).") var topK: Int?
    @Option(name: .long, parsing: .unconditional, help: "1 keeps all (default: the model's, else 0.95).") var topP: Float?
    @Option(name: .long, parsing: .unconditional, help: "0 keeps all (default: the model's, else 0.05).") var minP: Float?
    @Option(name: .long, parsing: .unconditional, help: "1 = none (default: the model's, else 1.1 over the last 64 tokens).")
    var repetitionPenalty: Float?
    @Option(name: .long, parsing: .unconditional, help: "Tokens the repetition penalty looks back on; 0 = all (default 64).")
    var repetitionWindow: Int?
    @Option(name: .long, parsing: .unconditional, help: "Random seed: the same seed gives the same text.") var seed: UInt64?
    @Option(name: .long, help: "Stop when this text appears (repeatable).") var stop: [String] = []
    @Flag(name: .long, help: "Keep going past end-of-sequence tokens.") var ignoreEos = false

    func parameters(for model: LoadedModel) throws -> GenerationParameters {
        var sampling = SamplingParameters.defaults(for: model)
        if let temperature { sampling.temperature = temperature }
        if let topK { sampling.topK = topK }
        if let topP { sampling.topP = topP }
        if let minP { sampling.minP = minP }
        // Temperature 0 is exact greedy: the default repetition penalty is off then (one given still applies).
        if let repetitionPenalty { sampling.repetitionPenalty = repetitionPenalty } else if sampling.temperature == 0 { sampling.repetitionPenalty = 1 }
        if let repetitionWindow { sampling.repetitionWindow = repetitionWindow }
        if let seed { sampling.seed = seed }
        try sampling.validate()
        guard maxTokens >= 0 else { throw ANELMError("--max-tokens must be ≥ 0") }
        return GenerationParameters(maxTokens: maxTokens, sampling: sampling, stopStrings: stop, stopAtEndOfSequence: !ignoreEos)
    }
}

/// `--template NAME`: a built-in chat template instead of the model's own.
struct TemplateOption: ParsableArguments {
    @Option(name: .long, help: "Built-in chat template to use instead of the model's (\(BuiltinChatTemplates.names.joined(separator: ", "))).")
    var template: String?

    /// The chosen built-in template's source, or nil for the model's own.
    func source() throws -> String? { try template.map(BuiltinChatTemplates.named) }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

func writeJSONLine(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// `x` with one decimal, for human-readable rates.
func oneDecimal(_ x: Double) -> String { String(format: "%.1f", x) }
