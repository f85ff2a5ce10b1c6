import ANELM
import ANELMInstall
import ArgumentParser
import Foundation

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn texts into sentence embeddings (default model: all-MiniLM-L6-v2, installed on first use).")

    @Option(name: .long, help: "A sentence-transformers folder (config.json, model.safetensors, tokenizer.json, modules.json).")
    var model: String?
    @Option(name: .long, help: "A text to embed (repeatable).") var text: [String] = []
    @Option(name: .long, help: "A file of texts, one a line.") var file: String?
    @Option(name: .long) var format: OutputFormat = .text
    @Option(name: .long, parsing: .unconditional, help: "Worker threads (default: physical cores).") var threads: Int?
    @Option(name: .long, help: "auto (weights as stored, fast), f32 (every weight dequantized, reference-exact) or ggml (weights as stored, activations rounded as llama.cpp rounds them).") var precision: String = "auto"
    @Option(name: .long, parsing: .unconditional, help: "Texts per encoder pass (default: all, in passes of at most 4096 tokens).")
    var batchSize: Int?
    @Flag(name: .long, help: "Measure: embed the texts in batches of --batch-size for about --seconds and print sentences per second.")
    var bench = false
    @Option(name: .long, parsing: .unconditional, help: "With --bench: how long to measure.") var seconds: Double = 5

    func run() throws {
        guard let precision = Precision(rawValue: precision) else {
            throw ANELMError("--precision must be one of: \(Precision.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let batchSize, batchSize < 1 { throw ANELMError("--batch-size must be ≥ 1, got \(batchSize)") }
        let texts = try inputTexts()
        let path = try model.map { URL(fileURLWithPath: $0) } ?? DefaultEmbedder.installIfNeeded()
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let embedder = try EmbedderLoader.loadPipeline(path, precision: precision, threads: threads.map { min(max($0, 1), cores) })
        let inputs = texts.map(embedder.input)
        for (index, input) in inputs.enumerated() where input.truncated {
            printError("warning: text \(index + 1) has \(input.originalTokenCount) tokens; the model reads the first \(embedder.maxSequenceLength)")
        }
        if bench { return try measure(embedder, inputs) }
        let size = batchSize ?? inputs.count
        var vectors: [[Float]] = []
        for start in stride(from: 0, to: inputs.count, by: size) {
            vectors += try embedder.embed(Array(inputs[start..<min(start + size, inputs.count)]))
        }
        switch format {
        case .json:
            try writeJSONLine(["model": path.lastPathComponent, "dimensions": embedder.dimensions, "embeddings": vectors.map { $0.map(Double.init) }])
        case .text:
            for vector in vectors { print(vector.map(\.description).joined(separator: " ")) }
        }
    }

    /// `--text`s, then the lines of `--file`; an empty text is an error naming it.
    func inputTexts() throws -> [String] {
        var texts = text
        for (index, t) in text.enumerated() where t.isEmpty { throw ANELMError("--text \(index + 1) is empty; give text to embed") }
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw ANELMError("cannot read \(file)") }
            guard let content = String(data: data, encoding: .utf8) else { throw ANELMError("\(file) is not UTF-8 text") }
            // "\r\n" is one Character in Swift, so both line ends are named.
            var lines = content.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map(String.init)
            if lines.last == "" { lines.removeLast() }  // the file's final newline
            for (index, line) in lines.enumerated() where line.isEmpty { throw ANELMError("\(file):\(index + 1) is an empty line; one text a line") }
            texts += lines
        }
        guard !texts.isEmpty else { throw ANELMError("nothing to embed: give --text (repeatable) or --file (one text a line)") }
        return texts
    }

    /// Sentences per second at `--batch-size` (default 32), after one warm-up pass.
    func measure(_ embedder: SentenceEmbedder, _ inputs: [EmbeddingInput]) throws {
        let size = batchSize ?? 32
        guard seconds > 0, seconds <= 3600 else { throw ANELMError("--seconds must be between 0 and 3600") }
        var batches: [[EmbeddingInput]] = []
        var next = 0
        for _ in 0..<max(1, (inputs.count + size - 1) / size) {
            batches.append((0..<size).map { i in inputs[(next + i) % inputs.count] })
            next = (next + size) % inputs.count
        }
        _ = try embedder.embed(batches[0])
        var sentences = 0
        var tokens = 0
        let start = DispatchTime.now()
        var elapsed = 0.0
        var round = 0
        while elapsed < seconds || round < batches.count {
            let batch = batches[round % batches.count]
            _ = try embedder.embed(batch)
            sentences += batch.count
            tokens += batch.reduce(0) { $0 + $1.tokens.count }
            round += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        }
        let rate = Double(sentences) / elapsed
        switch format {
        case .json:
            try writeJSONLine([
                "batch_size": size, "sentences": sentences, "tokens": tokens, "seconds": elapsed, "sentences_per_second": rate,
                "threads": threads ?? ThreadPool.physicalCoreCount, "isa": Kernels.isaName,
            ])
        case .text:
            print("\(sentences) sentences (\(tokens) tokens) in batches of \(size): \(oneDecimal(rate)) sentences/s")
        }
    }
}
