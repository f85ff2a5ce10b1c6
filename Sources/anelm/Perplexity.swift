import ANELM
import ArgumentParser
import Foundation

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a text file, computed as llama-perplexity does (non-overlapping windows, second half of each scored).")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "A UTF-8 text file.") var file: String
    @Option(name: .long, parsing: .unconditional, help: "Score at most this many windows (llama-perplexity's --chunks).") var chunks: Int?
    @Option(name: .long) var format: OutputFormat = .text

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw ANELMError("cannot read \(file)") }
        guard let text = String(data: data, encoding: .utf8) else { throw ANELMError("\(file) is not UTF-8 text") }
        // --context is the window (llama-perplexity's -c), 512 unless given; the model is loaded with it as its context.
        var options = modelOptions
        let window = options.context ?? 512
        options.context = window
        let loaded = try options.load()
        let bar = ProgressBar()
        let start = Date()
        let result = try Perplexity.measure(model: loaded.model, tokenizer: loaded.tokenizer, text: text, context: window, maxWindows: chunks) {
            done, total, ppl in bar.show(done: done, of: total, label: String(format: "window %d/%d  PPL %.4f", done, total, ppl))
        }
        bar.finish()
        switch format {
        case .json:
            try writeJSONLine([
                "perplexity": result.perplexity, "uncertainty": result.uncertainty, "windows": Double(result.windows),
                "tokens_scored": Double(result.tokensScored), "text_tokens": Double(result.textTokens), "window": Double(window),
            ])
        case .text:
            print(String(format: "PPL = %.4f +/- %.5f", result.perplexity, result.uncertainty))
            printError(
                String(
                    format: "%d windows of %d tokens (%d of the text's %d tokens scored) in %.1f s", result.windows, window, result.tokensScored,
                    result.textTokens, Date().timeIntervalSince(start)))
        }
    }
}
