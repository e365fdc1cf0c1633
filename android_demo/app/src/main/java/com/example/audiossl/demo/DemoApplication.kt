package com.example.audiossl.demo

import android.app.Application
import android.content.Context
import com.example.audiossl.core.ClipLibrary
import com.example.audiossl.core.Contract
import com.example.audiossl.core.DeviceSession
import com.example.audiossl.core.Manifest
import com.example.audiossl.core.ManifestException
import com.example.audiossl.core.OnDeviceModel
import com.example.audiossl.core.TensorFile
import java.io.File
import java.io.FileInputStream
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import java.security.MessageDigest
import org.tensorflow.lite.Interpreter

/**
 * Holds the one [DeviceSession] of the process, shared by the screen and the training worker
 * (its methods are synchronized), and the user's tagged clips.
 */
class DemoApplication : Application() {
  private var opened: Result<DeviceSession>? = null
  private var library: ClipLibrary? = null

  /** The session, opened on first use; throws the same error on every call if it cannot open. */
  @Synchronized
  fun session(): DeviceSession {
    val result = opened ?: runCatching { openSession(this) }.also { opened = it }
    return result.getOrThrow()
  }

  /** The tagged clips (needs a usable session for the clip length). */
  @Synchronized
  fun clips(): ClipLibrary =
    library ?: ClipLibrary(File(stateDir(this), CLIPS_FILE), session().manifest).also { library = it }

  companion object {
    /** Training windows the buffer keeps (each one `example_samples` long). */
    private const val BUFFER_WINDOWS = 32
    private const val STATE_DIR = "ondevice"
    private const val CLIPS_FILE = "clips.odtf"
    private const val INTERPRETER_THREADS = 2

    private fun stateDir(context: Context) = File(context.filesDir, STATE_DIR)

    /**
     * Loads `manifest.json` and `model.tflite` from the assets, checks the file against the
     * manifest's sha256, and restores the saved weights and buffer.
     */
    private fun openSession(context: Context): DeviceSession {
      val manifest = Manifest.parse(context.assets.open(Contract.FILE_MANIFEST).bufferedReader().use { it.readText() })
      val model = mapModel(context)
      val digest = MessageDigest.getInstance("SHA-256").apply { update(model.duplicate()) }.digest()
      val sha256 = TensorFile.bytesToHex(digest)
      if (sha256 != manifest.modelSha256) {
        throw ManifestException(
          "${Contract.FILE_MODEL} has sha256 ${sha256.take(16)}…, its manifest says " +
            "${manifest.modelSha256.take(16)}…: copy both files from the same export"
        )
      }
      // LiteRT's Interpreter API can switch XNNPACK on but takes no XNNPACK flags (the host
      // uses CompiledModel with flags 0x0B, see the README).
      val options = Interpreter.Options().setNumThreads(INTERPRETER_THREADS).setUseXNNPACK(true)
      val runner = TfliteSignatureRunner(Interpreter(model, options))
      try {
        return DeviceSession(OnDeviceModel(manifest, runner), stateDir(context), BUFFER_WINDOWS)
      } catch (e: RuntimeException) {
        runner.close()
        throw e
      }
    }

    private fun mapModel(context: Context): MappedByteBuffer =
      context.assets.openFd(Contract.FILE_MODEL).use { fd ->
        FileInputStream(fd.fileDescriptor).channel.use { channel ->
          channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
        }
      }
  }
}
