import ANELM
import ArgumentParser
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a model file: architecture, sizes, weight types, context, template.")

    @Argument(help: "A .gguf file or a Hugging Face folder (default: the default model).") var path: String?
    @Option(name: .long) var format: OutputFormat = .text
    @Flag(name: .long, help: "Also lower the model for the Neural Engine (decode, context 512) and report which ops fit it.") var ane = false

    func run() throws {
        let modelPath = try path ?? DefaultModel.installIfNeeded().path
        let info = try ModelInfo(path: modelPath)
        defer { if ane { printANEReport(modelPath) } }
        switch format {
        case .text:
            let width = info.rows.map(\.key.count).max() ?? 0
            for (key, value) in info.rows { print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value) }
        case .json:
            try writeJSONLine(Dictionary(info.rows.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }))
        }
    }
}

extension Info {
    /// The ANE lowering's op table; an unsupported architecture is reported, not fatal to `info`.
    func printANEReport(_ modelPath: String) {
        do {
            let report = ANEReport(graph: try ANELowering.decodeGraph(try ModelLoader.load(modelPath)))
            let totals = report.totals
            switch format {
            case .text:
                print("")
                print("ANE decode graph (fp16, context 512): \(totals.onANE) of \(totals.ops) ops meet the ANE constraints")
                print(report.table)
            case .json:
                try writeJSONLine(["ane_ops": totals.ops, "ane_ops_on_ane": totals.onANE,
                                   "ane_fall_backs": report.rows.filter { $0.fallBacks > 0 }.map { "\($0.kind.rawValue): \($0.fallBacks) (\($0.reasons.joined(separator: "; ")))" }])
            }
        } catch {
            print("ANE: \(error)")
        }
    }
}
