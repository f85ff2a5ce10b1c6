import ANELM
import ANELMContext
import ANELMInstall
import ANELMServer
import ArgumentParser
import Foundation

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics).")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Serve every .gguf file and model folder in this directory (with any --model).") var modelsDir: String?
    @Option(name: .long, help: "Bytes of model files loaded at once (e.g. 2G, 500M); beyond it idle models are unloaded, least recently used first.")
    var memoryBudget: String?
    @OptionGroup var templateOption: TemplateOption
    @Option(name: .long, help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(name: .long, help: "Port to listen on (0 picks a free one).") var port: Int = 8080
    @Option(name: .long, help: "Require 'Authorization: Bearer KEY' (default: $ANELM_API_KEY, if set).") var apiKey: String?
    @Option(name: .long, help: "Read the API key from this file (one line), keeping it out of the process list.") var apiKeyFile: String?
    @Option(name: .long, help: "Requests generated at the same time (slots).") var parallel: Int = 4
    @Option(name: .long, help: "Requests that may wait for a slot; more get 503.") var queue: Int = 16
    @Option(name: .long, help: "Tokens run per step: one for every decoding slot, the rest chunks of the prompts being read.")
    var batchTokens: Int = ServerConfiguration.defaultBatchTokens
    @Option(name: .long, help: "MiB of KV caches kept for finished conversations (prompt cache), least recently used dropped first.")
    var cacheMemory: Int = ServerConfiguration.defaultCacheMemory >> 20
    @Option(name: .long, help: "Seconds a new connection may take to send its first request header.") var headerTimeout: Double = 10
    @Option(name: .long, help: "Seconds a request may take to send its body.") var bodyTimeout: Double = 30
    @Option(name: .long, help: "Seconds a kept-alive connection may wait for its next request.") var idleTimeout: Double = 30
    @Option(name: .long, help: "Connections served at once; more wait until one closes.") var maxConnections: Int = 256
    @Option(name: .long, help: "A context store (made by anelm index): chat requests with \"context\" are answered from it; POST /v1/feedback.")
    var store: String?
    @Option(name: .long, help: "Also serve /v1/embeddings with this sentence-transformers folder ('default': all-MiniLM-L6-v2, installed on first use).")
    var embeddingModel: String?

    func run() throws {
        if apiKey != nil, apiKeyFile != nil { throw ANELMError("give either --api-key or --api-key-file, not both") }
        let key =
            try apiKeyFile.map(ServerConfiguration.apiKey(fromFile:))
            ?? apiKey ?? ProcessInfo.processInfo.environment["ANELM_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        var configuration = ServerConfiguration(host: host, port: port, apiKey: key, parallel: parallel, queueLimit: queue)
        configuration.timeouts.header = headerTimeout
        configuration.timeouts.body = bodyTimeout
        configuration.timeouts.idle = idleTimeout
        configuration.maxConnections = maxConnections
        configuration.memoryBudget = try memoryBudget.map(Self.bytes)
        configuration.batchTokens = batchTokens
        guard (0...(1 << 30)).contains(cacheMemory) else { throw ANELMError("--cache-memory must be between 0 and 2^30 MiB, got \(cacheMemory)") }
        configuration.cacheMemory = cacheMemory << 20
        try configuration.validate()
        let template = try templateOption.source()
        let options = modelOptions
        guard options.backend == .cpu || (options.models.count <= 1 && modelsDir == nil) else {
            throw ANELMError("--backend coreml serves one --model")
        }
        var paths = options.models
        if paths.isEmpty && modelsDir == nil { paths = [try options.modelPath()] }
        var specs = paths.map { path in ModelSpec(path: path, template: template) { try options.load(path: path) } }
        if let modelsDir {
            let found = try ModelSpec.models(in: modelsDir) { try options.load(path: $0) }.map { spec -> ModelSpec in
                var spec = spec
                spec.template = template
                return spec
            }
            guard !found.isEmpty else { throw ANELMError("no .gguf files or model folders in \(modelsDir)") }
            specs += found
        }
        guard options.loraOptions.lora.isEmpty || specs.count == 1 else {
            throw ANELMError("--lora adapts one model; serve it alone (without other --model or --models-dir)")
        }
        // The default model (the first) loads now, so a bad file fails at start; the others on first use.
        let first = options.backend == .coreml ? try options.load() : try options.load(path: specs[0].path)
        let others = specs.dropFirst().map(\.id).joined(separator: ", ")
        // --context (a model option) is each slot's: every slot holds that many tokens, never a share of them.
        printError(
            "anelm serve — \(first.name) (\(parallel) slots of \(first.model.contextLength) tokens each) loaded in "
                + "\(oneDecimal(first.loadSeconds)) s"
                + (others.isEmpty ? "" : "; also serving \(others) (loaded on first use)"))
        let embedder = try embeddingModel.map { name in
            let path = name == "default" ? try DefaultEmbedder.installIfNeeded() : URL(fileURLWithPath: name)
            let pipeline = try EmbedderLoader.loadPipeline(path, threads: modelOptions.threads)
            printError("anelm serve — embeddings with \(path.lastPathComponent) (\(pipeline.dimensions) dimensions) on /v1/embeddings")
            return ServedEmbedder(pipeline, name: path.lastPathComponent)
        }
        let context = try store.map { path in try StoreOption.openEngine(path, threads: modelOptions.threads) }
        let server = OpenAIServer(models: specs, preloaded: [first], configuration: configuration, embedder: embedder, context: context)
        // ArgumentParser runs commands synchronously: serve on the concurrency pool and wait.
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { try await server.run() } catch { outcome.set(error) }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw ANELMError("the server stopped: \(error)") }
    }
}

extension Serve {
    /// "2G", "500M", "64K" or a number of bytes.
    static func bytes(_ text: String) throws -> Int {
        let units: [Character: Double] = ["K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12]
        var number = text.uppercased()
        var scale = 1.0
        if number.hasSuffix("B") { number.removeLast() }
        if let last = number.last, let unit = units[last] {
            scale = unit
            number.removeLast()
        }
        guard let value = Double(number), value > 0, value * scale < 1e18 else {
            throw ANELMError("--memory-budget must be a size such as 2G, 500M or a number of bytes, got '\(text)'")
        }
        return Int(value * scale)
    }
}

/// The error a background task ended with.
private final class Outcome: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Error?
    func set(_ error: Error) {
        lock.lock()
        stored = error
        lock.unlock()
    }
    var error: Error? {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}
