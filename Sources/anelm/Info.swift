import ANELM
import ANELMInstall
import ArgumentParser
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model file: architecture, sizes, weight types, context, template; or lint an exported .mlpackage for the Neural Engine.")

    @Argument(help: "A .gguf file, a Hugging Face folder (default: the default model), or an exported NAME.mlpackage.") var path: String?
    @Option(name: .long) var format: OutputFormat = .text
    @Flag(
        name: .long,
        help:
            "The Neural Engine lint: for a model, its ANE-shaped graphs' ops and the lint of a package exported with --weights (context 512, block 64, into a temporary folder); for a .mlpackage, the lint of its MIL program."
    )
    var ane = false
    @Flag(name: .long, help: "With --ane: exit non-zero when the lint finds a violation.") var strict = false
    @Option(name: .long, help: "With --ane on a model: the weights mode of the export to lint (as export-coreml --weights).") var weights: String = "fp16"

    func run() throws {
        if let path, URL(fileURLWithPath: path).pathExtension == "mlpackage" {
            try describePackage(path)
            if ane { try lint(try ANELint(package: path)) }
            return
        }
        let modelPath = try path ?? DefaultModel.installIfNeeded().path
        let info = try ModelInfo(path: modelPath)
        switch format {
        case .text:
            let width = info.rows.map(\.key.count).max() ?? 0
            for (key, value) in info.rows { print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value) }
        case .json:
            try writeJSONLine(Dictionary(info.rows.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }))
        }
        guard ane else { return }
        do {
            try printANEReport(modelPath)
        } catch  where !strict {
            print("ANE: \(error)")  // an unsupported architecture is reported, not fatal to `info`
        }
    }
}

extension Info {
    /// The package's anelm.json facts.
    func describePackage(_ path: String) throws {
        let info = try ANEPackageInfo.read(package: path)
        var rows: [(String, String)] = [
            ("architecture", info.architecture), ("source", info.source), ("weights", info.weights), ("functions", info.functions.joined(separator: ", ")),
            ("context", "\(info.contextLength)"), ("prefill block", info.prefillBlock.map(String.init) ?? "-"), ("vocabulary", "\(info.vocabSize)"),
            ("output chunks", "\(info.outputChunks)"),
        ]
        if let e = info.encoder {
            rows.append(("embedding", "\(e.dimensions) dimensions, \(e.pooling) pooling\(e.normalized ? ", L2-normalized" : "")"))
        }
        switch format {
        case .text:
            let width = rows.map(\.0.count).max() ?? 0
            for (key, value) in rows { print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value) }
        case .json:
            try writeJSONLine(Dictionary(rows, uniquingKeysWith: { a, _ in a }))
        }
    }

    /// Prints the lint; with --strict a violation is a failure.
    func lint(_ lint: ANELint) throws {
        switch format {
        case .text:
            print("")
            print("ANE lint: \(lint.violations.count) violations, \(lint.findings.filter { $0.severity == .warning }.count) warnings")
            print(lint.text)
        case .json:
            try writeJSONLine([
                "ane_lint": lint.findings.map { ["rule": $0.rule.id, "severity": $0.severity.rawValue, "message": $0.message, "source": $0.rule.source] }
            ])
        }
        if strict && !lint.violations.isEmpty {
            throw ANELMError("the ANE lint found \(lint.violations.count) violations (--strict)")
        }
    }

    /// The ANE lowering's op table per function, then the lint of its export into a temporary folder.
    func printANEReport(_ modelPath: String) throws {
        let format = try ANEWeightFormat(parsing: weights)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-lint-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let package = folder.appendingPathComponent("model.mlpackage").path
        let program: ANEProgram
        let writePackage: () throws -> Void
        if try isEmbeddingModel(modelPath) {
            // An embedder: its sentence-embedding functions at the default lengths.
            program = try ANEEncoderLowering.program(try EmbedderLoader.loadPipeline(URL(fileURLWithPath: modelPath), precision: .f32))
            writePackage = { _ = try CoreMLPackage.exportEmbedder(folder: modelPath, to: package, weights: format) }
        } else {
            let loaded = try ModelLoader.load(modelPath)
            program = try ANELowering.program(loaded)
            writePackage = {
                let info = try ANEPackageInfo(program: program, loaded: loaded, weights: format)
                _ = try CoreMLPackage.write(program, info: info, tokenizer: nil, to: package, weights: format)
            }
        }
        let n = program.metadata["context_length"] ?? 0
        let block = program.metadata["prefill_block"] ?? 0
        var json: [String: Any] = [:]
        for function in program.functions {
            let report = ANEReport(graph: function.graph)
            let totals = report.totals
            switch self.format {
            case .text:
                print("")
                if let length = function.graph.metadata["sequence_length"] {
                    print("ANE \(function.name) graph (fp16, \(length) tokens per call): \(totals.onANE) of \(totals.ops) ops meet the ANE constraints")
                } else {
                    let shape = function.name == "prefill" ? "\(block) tokens per call" : "1 token per call"
                    // A recurrent model's state has no positions: the context only bounds a sequence.
                    let context = program.metadata["recurrent"] == 1 ? "recurrent state, sequences up to \(n) tokens" : "context \(n)"
                    print("ANE \(function.name) graph (fp16, \(context), \(shape)): \(totals.onANE) of \(totals.ops) ops meet the ANE constraints")
                }
                print(report.table)
            case .json:
                json["ane_\(function.name)_ops"] = totals.ops
                json["ane_\(function.name)_ops_on_ane"] = totals.onANE
                json["ane_\(function.name)_fall_backs"] = report.rows.filter { $0.fallBacks > 0 }.map {
                    "\($0.kind.rawValue): \($0.fallBacks) (\($0.reasons.joined(separator: "; ")))"
                }
            }
        }
        if self.format == .json {
            json["ane_context_length"] = n
            json["ane_prefill_block"] = block
            try writeJSONLine(json)
        }
        try writePackage()
        try lint(try ANELint(package: package))
    }
}
