import ANELM
import ANELMInstall
import ArgumentParser
import Foundation

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model: GGUF or Hugging Face folder to a GGUF file (any type, re-quantizing) or to a Hugging Face folder (f32/f16/bf16).")

    @Option(name: .long, help: "A .gguf file or a Hugging Face folder (default: the default model).") var model: String?
    @Option(name: .long, help: "NAME.gguf writes a GGUF v3 file; any other path a Hugging Face folder (safetensors, config.json, tokenizer).")
    var output: String
    @Option(name: .long, help: "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k or q6_k (a folder takes f32, f16 or bf16).")
    var type: String
    @Flag(name: .long, help: "Replace the output if it exists (only once the new one is complete).") var force = false
    @Option(name: .long, help: ArgumentHelp("A LoRA adapter added into the weights it adapts, with an optional scale (repeatable).", valueName: "path[:scale]"))
    var lora: [String] = []

    func run() throws {
        guard let tensorType = Quantizer.writableTypes.first(where: { $0.description.lowercased() == type.lowercased() }) else {
            throw ANELMError("--type must be one of: \(Quantizer.writableTypes.map { $0.description.lowercased() }.joined(separator: ", "))")
        }
        let path = try model ?? DefaultModel.installIfNeeded().path
        let start = Date()
        let interrupts = removeStagedOutputsOnInterrupt()
        defer { interrupts.forEach { $0.cancel() } }
        let bar = ProgressBar()
        let adapters = try lora.map(LoRAChoice.init(parsing:))
        let summary = try Converter.convert(model: path, output: output, type: tensorType, force: force, lora: adapters) { p in
            bar.show(done: p.bytesDone, of: p.byteCount, label: "\(p.tensorsDone)/\(p.tensorCount) \(p.tensor)")
        }
        bar.finish()
        let types = summary.tensorsByType.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        printError(
            String(format: "wrote %@ (%.1f MB; tensors: %@) in %.1f s", output, Double(summary.bytes) / 1e6, types, Date().timeIntervalSince(start)))
    }
}

/// A one-line progress bar on standard error, redrawn in place.
final class ProgressBar {
    private var lastDrawn = Date.distantPast
    private let isTerminal = isatty(STDERR_FILENO) == 1

    func show(done: Int, of total: Int, label: String) {
        let now = Date()
        guard done == total || now.timeIntervalSince(lastDrawn) > 0.1 else { return }
        lastDrawn = now
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let filled = Int(fraction * 30)
        let line = "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled) + "] " + String(format: "%3.0f%% ", fraction * 100) + label
        // On a terminal the line is redrawn; into a file or pipe each update is its own line.
        FileHandle.standardError.write(Data((isTerminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
    }

    func finish() {
        if isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
