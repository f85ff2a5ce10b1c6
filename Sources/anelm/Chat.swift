import ANELM
import ArgumentParser
import Foundation

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Talk with a model. /reset starts over, /exit leaves; Ctrl-C stops a reply.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions
    @Option(name: .long, help: "System message.") var system: String?
    @OptionGroup var templateOption: TemplateOption
    @OptionGroup var grammarOptions: GrammarOptions

    func run() throws {
        let template = try templateOption.source()
        let loaded = try modelOptions.load()
        guard loaded.chatTemplate != nil || template != nil else {
            throw ANELMError("\(loaded.name) has no chat template; pick a built-in one with --template (\(BuiltinChatTemplates.names.joined(separator: ", ")))")
        }
        var parameters = try sampling.parameters(for: loaded)
        parameters.grammar = try grammarOptions.makeGrammar()
        let session = loaded.makeSession()
        let interrupt = InterruptWatcher()
        var messages: [ChatMessage] = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        printError("anelm chat — \(loaded.name). /reset to start over, /exit to leave, Ctrl-C stops a reply.")
        while true {
            FileHandle.standardOutput.write(Data("> ".utf8))
            guard let line = readLine() else { break }
            let input = line.trimmingCharacters(in: .whitespaces)
            if input.isEmpty { continue }
            if input == "/exit" || input == "/quit" { break }
            if input == "/reset" {
                messages = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
                session.reset()
                printError("(conversation reset)")
                continue
            }
            messages.append(ChatMessage(role: "user", content: input))
            let prompt: [Int]
            do { prompt = try loaded.chatPromptTokens(messages, template: template) } catch {
                printError("error: \(error)")
                messages.removeLast()
                continue
            }
            interrupt.reset()
            // The session keeps the conversation's KV cache: only the new turn is prefilled.
            let result = try session.generate(prompt: prompt, parameters: parameters) { chunk in
                FileHandle.standardOutput.write(Data(chunk.text.utf8))
                return !interrupt.fired
            }
            FileHandle.standardOutput.write(Data("\n".utf8))
            if result.finishReason == .cancelled { printError("(stopped)") }
            messages.append(ChatMessage(role: "assistant", content: result.text))
        }
    }
}

/// Turns Ctrl-C into a flag while chatting, so it stops the reply and not the program.
final class InterruptWatcher: @unchecked Sendable {
    private let source: DispatchSourceSignal
    private let lock = NSLock()
    private var flag = false

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [weak self] in self?.set() }
        source.resume()
    }

    private func set() {
        lock.lock()
        flag = true
        lock.unlock()
    }
    func reset() {
        lock.lock()
        flag = false
        lock.unlock()
    }
    var fired: Bool {
        lock.lock()
        defer { lock.unlock() }
        return flag
    }
}
