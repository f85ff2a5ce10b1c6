import ANELM
import ANELMInstall
import ArgumentParser
import Foundation

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the token ids of a text.")

    @Option(name: .long, help: "A .gguf file or a Hugging Face folder (default: the default model).") var model: String?
    @Option(name: .long) var text: String
    @Flag(name: .long, help: "Do not add BOS/EOS as the tokenizer would.") var noSpecialTokens = false
    @Flag(
        inversion: .prefixedNo,
        help: ArgumentHelp(
            "Match special tokens' texts (<|im_end|>) in the text as the tokens; --no-parse-special tokenizes them as ordinary text, as chat messages are."))
    var parseSpecial = true
    @Option(name: .long) var format: OutputFormat = .text

    func run() throws {
        let path = try model ?? DefaultModel.installIfNeeded().path
        let tokenizer = try ModelLoader.loadText(path).tokenizer
        let ids = tokenizer.encode(text, parseSpecialTokens: parseSpecial, addSpecialTokens: !noSpecialTokens)
        switch format {
        case .json:
            try writeJSONLine(["ids": ids, "tokens": ids.map { tokenizer.tokenString($0) ?? "" }])
        case .text:
            for id in ids { print("\(id)\t\(tokenizer.tokenString(id).map { String(reflecting: $0) } ?? "?")") }
            printError("\(ids.count) tokens")
        }
    }
}
