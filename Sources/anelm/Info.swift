import ANELM
import ArgumentParser
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a model file: architecture, sizes, weight types, context, template.")

    @Argument(help: "A .gguf file or a Hugging Face folder (default: the default model).") var path: String?
    @Option(name: .long) var format: OutputFormat = .text

    func run() throws {
        let info = try ModelInfo(path: try path ?? DefaultModel.installIfNeeded().path)
        switch format {
        case .text:
            let width = info.rows.map(\.key.count).max() ?? 0
            for (key, value) in info.rows { print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value) }
        case .json:
            try writeJSONLine(Dictionary(info.rows.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }))
        }
    }
}
