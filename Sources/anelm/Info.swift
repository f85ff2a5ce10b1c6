import ANELM
import ANELMInstall
import ArgumentParser
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a model file: architecture, sizes, weight types, context, template.")

    @Argument(help: "A .gguf file or a Hugging Face folder (default: the default model).") var path: String?
    @Option(name: .long) var format: OutputFormat = .text
    @Flag(name: .long, help: "Also lower the model for the Neural Engine (decode and prefill, context 512, block 64) and report which ops fit it.") var ane = false

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
    /// The ANE lowering's op table per function; an unsupported architecture is reported, not fatal to `info`.
    func printANEReport(_ modelPath: String) {
        do {
            let program = try ANELowering.program(try ModelLoader.load(modelPath))
            let n = program.metadata["context_length"] ?? 0, block = program.metadata["prefill_block"] ?? 0
            var json: [String: Any] = [:]
            for function in program.functions {
                let report = ANEReport(graph: function.graph)
                let totals = report.totals
                switch format {
                case .text:
                    let shape = function.name == "prefill" ? "\(block) tokens per call" : "1 token per call"
                    print("")
                    print("ANE \(function.name) graph (fp16, context \(n), \(shape)): \(totals.onANE) of \(totals.ops) ops meet the ANE constraints")
                    print(report.table)
                case .json:
                    json["ane_\(function.name)_ops"] = totals.ops
                    json["ane_\(function.name)_ops_on_ane"] = totals.onANE
                    json["ane_\(function.name)_fall_backs"] = report.rows.filter { $0.fallBacks > 0 }.map { "\($0.kind.rawValue): \($0.fallBacks) (\($0.reasons.joined(separator: "; ")))" }
                }
            }
            if format == .json {
                json["ane_context_length"] = n
                json["ane_prefill_block"] = block
                try writeJSONLine(json)
            }
        } catch {
            print("ANE: \(error)")
        }
    }
}
