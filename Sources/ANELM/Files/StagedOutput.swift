import Foundation

/// An output (file or folder) written under a unique temporary name beside its destination and moved into place
/// only when complete, so an interrupted or failed writer leaves nothing half-written and never touches what it
/// did not create. Every live staging path is registered, so that the command line can remove them on
/// SIGINT/SIGTERM (`removeAllLive`). Used by every writer: Core ML export today, convert and index later.
public final class StagedOutput: @unchecked Sendable {
    public let destination: String
    /// Where the output is written: `.NAME.anelm-<pid>-<random>.partial` beside the destination.
    public let staging: String
    /// Whether an existing destination is replaced at commit (`--force`) rather than refused.
    public let replacing: Bool
    private var finished = false

    private static let lock = NSLock()
    nonisolated(unsafe) private static var live: Set<String> = []

    /// Refuses a destination that exists unless `replacing`; nothing is created yet.
    public init(destination: String, replacing: Bool = false) throws {
        guard replacing || !FileManager.default.fileExists(atPath: destination) else {
            throw ANELMError("\(destination) already exists; remove it or choose another name")
        }
        let url = URL(fileURLWithPath: destination)
        let token = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        staging =
            url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).anelm-\(ProcessInfo.processInfo.processIdentifier)-\(token).partial").path
        self.destination = destination
        self.replacing = replacing
        Self.lock.lock()
        Self.live.insert(staging)
        Self.lock.unlock()
    }

    deinit { discard() }

    /// Moves the finished output into place. A destination that appeared meanwhile (another writer) is left alone
    /// and this output discarded; when `replacing`, the old destination is removed first (only once the new output
    /// is complete).
    public func commit() throws {
        defer { discard() }
        let fm = FileManager.default
        if replacing && fm.fileExists(atPath: destination) {
            do { try fm.removeItem(atPath: destination) } catch { throw ANELMError("could not remove \(destination) to replace it: \(error.localizedDescription)") }
        }
        guard !fm.fileExists(atPath: destination) else {
            throw ANELMError("\(destination) appeared while it was being written (another writer?); it was left as it is")
        }
        do {
            try fm.moveItem(atPath: staging, toPath: destination)
        } catch {
            // Another writer can finish between the check above and the move: the move then fails, never clobbers.
            if fm.fileExists(atPath: destination) {
                throw ANELMError("\(destination) appeared while it was being written (another writer?); it was left as it is")
            }
            throw ANELMError("could not move the finished output to \(destination): \(error.localizedDescription)")
        }
        finished = true
    }

    /// Removes the staging output (only ever this writer's own unique path).
    public func discard() {
        Self.lock.lock()
        let wasLive = Self.live.remove(staging) != nil
        Self.lock.unlock()
        if wasLive && !finished { try? FileManager.default.removeItem(atPath: staging) }
    }

    /// Removes every output still being written in this process: for a signal handler that then exits.
    public static func removeAllLive() {
        lock.lock()
        let paths = live
        live.removeAll()
        lock.unlock()
        for path in paths { try? FileManager.default.removeItem(atPath: path) }
    }
}
