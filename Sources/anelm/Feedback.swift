import ANELM
import ANELMContext
import ArgumentParser
import Foundation

struct Feedback: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Say which sources of a logged answer helped (the relevance model learns from it); without --useful/--not-useful, show the answer's sources.")

    @OptionGroup var storeOption: StoreOption
    @Option(name: .long, parsing: .unconditional, help: "The answer's id (printed by anelm ask).") var answer: Int64
    @Option(name: .long, help: "A source number ([N] in the answer) that helped (repeatable).") var useful: [Int] = []
    @Option(name: .long, help: "A source number that did not help (repeatable).") var notUseful: [Int] = []

    func run() throws {
        let store = try ContextStore(path: storeOption.store, create: false)
        let logged = try store.loggedAnswer(answer)
        let byNumber = Dictionary(logged.sources.map { ($0.citation, $0.chunkID) }, uniquingKeysWith: { a, _ in a })
        for (numbers, isUseful) in [(useful, true), (notUseful, false)] {
            for number in numbers {
                guard let chunk = byNumber[number] else {
                    throw ANELMError("answer \(answer) has sources 1…\(logged.sources.count); there is no [\(number)]")
                }
                try store.recordFeedback(answerID: answer, chunkID: chunk, useful: isUseful)
            }
        }
        let after = try store.loggedAnswer(answer)
        print("question: \(after.query)")
        for s in after.sources {
            let mark = s.used.map { $0 ? "used" : "ignored" } ?? "not analyzed"
            let said = s.feedback.map { $0 ? ", you said useful" : ", you said not useful" } ?? ""
            print("[\(s.citation)] chunk \(s.chunkID): \(mark)\(said)")
        }
    }
}
