import ANELM
import ArgumentParser
import Foundation

/// Prefill and decode speed in the manner of llama-bench: a fixed prompt of N tokens, N generated
/// tokens, repeated; medians reported with min and max.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure prefill and decode speed, load time and peak memory.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Prompt length in tokens.") var promptTokens: Int = 128
    @Option(name: .long, help: "Tokens generated per repetition.") var genTokens: Int = 64
    @Option(name: .long, help: "Repetitions (each a fresh sequence).") var repetitions: Int = 3
    @Option(name: .long, help: "text, or json (one object on the last line).") var format: OutputFormat = .text
    @Option(
        name: .long,
        help:
            "Batch sizes, e.g. 1,2,4,8,16: that many sequences prefilled and decoded together in one pass per step (aggregate tokens/s, as llama-batched-bench reports them)."
    )
    var batch: String?
    @OptionGroup var grammarOptions: GrammarOptions

    func run() throws {
        guard promptTokens >= 1, genTokens >= 1, repetitions >= 1 else {
            throw ANELMError("--prompt-tokens, --gen-tokens and --repetitions must be ≥ 1")
        }
        let loaded = try modelOptions.load()
        guard promptTokens + genTokens <= loaded.model.contextLength else {
            throw ANELMError("\(promptTokens + genTokens) tokens exceed the context length \(loaded.model.contextLength)")
        }
        // A deterministic prompt of ordinary tokens (ids from the middle of the vocabulary).
        let vocab = loaded.tokenizer.vocabSize
        var rng = SeededGenerator(seed: 1)
        let prompt = (0..<promptTokens).map { _ in vocab / 8 + Int(rng.next() % UInt64(vocab / 2)) }
        // With a grammar, decoding follows it (and may end sooner, when it is complete).
        let grammar = try grammarOptions.makeGrammar()
        let parameters = GenerationParameters(maxTokens: genTokens, stopAtEndOfSequence: grammar != nil, grammar: grammar)

        if grammar != nil, format == .text {
            let start = Date()
            _ = GrammarVocabulary.for(loaded.tokenizer)
            printError("grammar vocabulary trie (once per tokenizer): \(String(format: "%.3f", Date().timeIntervalSince(start))) s")
        }
        // One untimed warm-up pass pages the weights in.
        _ = try loaded.makeSession().generate(prompt: Array(prompt.prefix(8)), parameters: GenerationParameters(maxTokens: 2, stopAtEndOfSequence: false))
        if let batch { return try runBatches(loaded, sizes: try batchSizes(batch), prompt: prompt) }
        var prefill: [Double] = []
        var decode: [Double] = []
        var grammarMilliseconds: [Double] = []
        var grammarShare: [Double] = []
        var state = (bytes: 0, tokens: 0)
        for r in 0..<repetitions {
            let session = loaded.makeSession()
            let result = try session.generate(prompt: prompt, parameters: parameters)
            state = (session.stateBytes, prompt.count + result.tokens.count)
            prefill.append(result.prefillTokensPerSecond)
            decode.append(result.decodeTokensPerSecond)
            if grammar != nil, !result.tokens.isEmpty, result.decodeSteps > 0 {
                let perToken = result.grammarSeconds / Double(result.tokens.count)
                grammarMilliseconds.append(perToken * 1000)
                grammarShare.append(perToken / (result.decodeSeconds / Double(result.decodeSteps)))
                if format == .text {
                    printError(
                        "  grammar: \(result.tokens.count) tokens, \(String(format: "%.3f", perToken * 1000)) ms/token CPU, finish \(result.finishReason.rawValue): \(result.text.prefix(120))"
                    )
                }
            }
            if format == .text {
                printError(
                    "repetition \(r + 1)/\(repetitions): prefill \(oneDecimal(result.prefillTokensPerSecond)) t/s, decode \(oneDecimal(result.decodeTokensPerSecond)) t/s"
                )
            }
        }
        let peak = peakResidentMegabytes()
        switch format {
        case .text:
            print(
                "model       \(loaded.name) (\(loaded.architecture), precision \(modelOptions.precision), \(Kernels.isaName) kernels, \(loaded.pool.threads) threads)"
            )
            print("prefill     \(promptTokens) tokens: \(summary(prefill)) t/s")
            print("decode      \(genTokens) tokens: \(summary(decode)) t/s")
            if !grammarMilliseconds.isEmpty {
                print(
                    "grammar     \(String(format: "%.3f", median(grammarMilliseconds))) ms/token CPU (max \(String(format: "%.3f", grammarMilliseconds.max() ?? 0))), \(oneDecimal(median(grammarShare) * 100))% of this run's decode step (max \(oneDecimal((grammarShare.max() ?? 0) * 100))%)"
                )
            }
            print("state       \(state.bytes) bytes after \(state.tokens) tokens (KV cache or recurrent state)")
            print("load        \(String(format: "%.3f", loaded.loadSeconds)) s")
            print("peak RSS    \(oneDecimal(peak)) MB")
        case .json:
            try writeJSONLine([
                "model": loaded.name, "threads": loaded.pool.threads, "precision": modelOptions.precision,
                "prompt_tokens": promptTokens, "gen_tokens": genTokens, "repetitions": repetitions,
                "prefill_tps": median(prefill), "prefill_tps_min": prefill.min() ?? 0, "prefill_tps_max": prefill.max() ?? 0,
                "decode_tps": median(decode), "decode_tps_min": decode.min() ?? 0, "decode_tps_max": decode.max() ?? 0,
                "grammar_ms_per_token": median(grammarMilliseconds), "grammar_share_of_decode_step": median(grammarShare),
                "load_s": loaded.loadSeconds, "peak_rss_mb": peak, "isa": Kernels.isaName,
                "state_bytes": state.bytes, "state_tokens": state.tokens,
            ])
        }
    }

    func batchSizes(_ list: String) throws -> [Int] {
        let sizes = list.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) >= 1 && ($0 ?? 0) <= 256 }) else {
            throw ANELMError("--batch takes sizes from 1 to 256 separated by commas, got '\(list)'")
        }
        return sizes.compactMap { $0 }
    }

    /// For each size B: B sequences prefilled in one pass (B × prompt tokens), then `genTokens` steps that
    /// each decode one token of every sequence in one pass. Medians over the repetitions.
    func runBatches(_ loaded: LoadedModel, sizes: [Int], prompt: [Int]) throws {
        let model = loaded.model
        var rows: [[String: Any]] = []
        if format == .text {
            print(
                "model  \(loaded.name) (\(loaded.architecture), precision \(modelOptions.precision), \(Kernels.isaName) kernels, \(loaded.pool.threads) threads)"
            )
            print("prompt \(promptTokens) tokens per sequence, \(genTokens) generated per sequence")
            print("batch   prefill t/s   decode t/s (all sequences)   decode t/s per sequence")
        }
        for size in sizes {
            var prefill: [Double] = []
            var decode: [Double] = []
            for _ in 0..<repetitions {
                let states = (0..<size).map { _ in model.makeState() }
                var start = DispatchTime.now()
                var logits = try model.forward(batch: states.map { (prompt, $0) }, allPositions: false)
                prefill.append(Double(size * promptTokens) / seconds(since: start))
                start = DispatchTime.now()
                for _ in 0..<genTokens {
                    logits = try model.forward(batch: zip(logits, states).map { ([argmax($0.0)], $0.1) }, allPositions: false)
                }
                decode.append(Double(size * genTokens) / seconds(since: start))
            }
            let p = median(prefill)
            let d = median(decode)
            rows.append(["batch": size, "prefill_tps": p, "decode_tps": d, "decode_tps_per_sequence": d / Double(size)])
            if format == .text {
                print(String(format: "%5d   %11.1f   %26.1f   %23.1f", size, p, d, d / Double(size)))
            }
        }
        if format == .json {
            try writeJSONLine([
                "model": loaded.name, "threads": loaded.pool.threads, "precision": modelOptions.precision,
                "prompt_tokens": promptTokens, "gen_tokens": genTokens, "isa": Kernels.isaName, "batches": rows,
                "peak_rss_mb": peakResidentMegabytes(),
            ])
        }
    }

    func seconds(since start: DispatchTime) -> Double { Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9 }

    func summary(_ xs: [Double]) -> String {
        "\(oneDecimal(median(xs))) (min \(oneDecimal(xs.min() ?? 0)), max \(oneDecimal(xs.max() ?? 0)))"
    }
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    guard !s.isEmpty else { return 0 }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Peak resident memory of this process in MB (0 where it cannot be read).
func peakResidentMegabytes() -> Double { Double(ProcessMemory.peakResident() ?? 0) / 1_048_576 }
