package com.example.audiossl.demo

import android.Manifest.permission.RECORD_AUDIO
import android.annotation.SuppressLint
import android.content.Intent
import android.content.pm.PackageManager
import android.os.Bundle
import android.widget.Button
import android.widget.EditText
import android.widget.TextView
import android.widget.Toast
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.core.content.ContextCompat
import androidx.core.content.FileProvider
import androidx.lifecycle.lifecycleScope
import androidx.work.WorkInfo
import androidx.work.WorkManager
import com.example.audiossl.core.ClipLibrary
import com.example.audiossl.core.Contract
import com.example.audiossl.core.DeviceSession
import com.example.audiossl.core.SampleRing
import java.io.File
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.delay
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * The demo screen: listen to the microphone, show the live embedding and its nearest tagged
 * clips, tag clips, start training, share the weight update.
 */
class MainActivity : AppCompatActivity() {
  private lateinit var modelInfo: TextView
  private lateinit var recordButton: Button
  private lateinit var bufferInfo: TextView
  private lateinit var embeddingView: EmbeddingView
  private lateinit var matches: TextView
  private lateinit var labelInput: EditText
  private lateinit var tagButton: Button
  private lateinit var trainButton: Button
  private lateinit var trainLog: TextView
  private lateinit var shareButton: Button

  private lateinit var session: DeviceSession
  private lateinit var clips: ClipLibrary
  private lateinit var ring: SampleRing
  private var recording: Job? = null
  private val lossLines = ArrayList<String>()

  /** Tagged-clip embeddings, valid for one weights version and clip count. */
  private var references: List<Pair<String, FloatArray>> = emptyList()
  private var referencesKey: Pair<Int, Int>? = null

  private val askMicrophone = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
    if (granted) startRecording() else toast(getString(R.string.microphone_denied))
  }

  override fun onCreate(savedInstanceState: Bundle?) {
    super.onCreate(savedInstanceState)
    setContentView(R.layout.activity_main)
    modelInfo = findViewById(R.id.model_info)
    recordButton = findViewById(R.id.record_button)
    bufferInfo = findViewById(R.id.buffer_info)
    embeddingView = findViewById(R.id.embedding_view)
    matches = findViewById(R.id.matches)
    labelInput = findViewById(R.id.label_input)
    tagButton = findViewById(R.id.tag_button)
    trainButton = findViewById(R.id.train_button)
    trainLog = findViewById(R.id.train_log)
    shareButton = findViewById(R.id.share_button)

    val app = application as DemoApplication
    lifecycleScope.launch {
      val opened = withContext(Dispatchers.IO) { runCatching { app.session() to app.clips() } }
      opened.onSuccess { (session, clips) -> onSessionReady(session, clips) }
        .onFailure { modelInfo.text = getString(R.string.model_error, it.message ?: it.toString()) }
    }
  }

  override fun onStop() {
    super.onStop()
    stopRecording()
  }

  private fun onSessionReady(session: DeviceSession, clips: ClipLibrary) {
    this.session = session
    this.clips = clips
    val manifest = session.manifest
    ring = SampleRing(manifest.patchSamples)
    modelInfo.text = getString(
      R.string.model_info, manifest.description, manifest.batchSize, manifest.exampleSamples,
      manifest.embeddingDim, manifest.sampleRate, session.restored.source, session.examples
    )
    val notes = session.notes + listOfNotNull(clips.loadProblem)
    if (notes.isNotEmpty()) toast(notes.joinToString("\n"))
    showBuffer()
    recordButton.setOnClickListener { if (recording == null) requestRecording() else stopRecording() }
    tagButton.setOnClickListener { tagLatest() }
    trainButton.setOnClickListener { TrainWorker.trainNow(this) }
    shareButton.setOnClickListener { shareUpdate() }
    for (button in listOf(recordButton, tagButton, trainButton, shareButton)) button.isEnabled = true

    TrainWorker.scheduleWhenIdle(this)
    val work = WorkManager.getInstance(this)
    for (name in listOf(TrainWorker.NOW, TrainWorker.WHEN_IDLE)) {
      work.getWorkInfosForUniqueWorkLiveData(name).observe(this) { infos -> infos.forEach { showTraining(it) } }
    }
  }

  private fun requestRecording() {
    if (ContextCompat.checkSelfPermission(this, RECORD_AUDIO) == PackageManager.PERMISSION_GRANTED) {
      startRecording()
    } else {
      askMicrophone.launch(RECORD_AUDIO)
    }
  }

  @SuppressLint("MissingPermission")  // Granted: see requestRecording.
  private fun startRecording() {
    if (recording != null) return
    recordButton.text = getString(R.string.stop_listening)
    recording = lifecycleScope.launch {
      val embedding = launch {
        while (isActive) {
          delay(EMBED_INTERVAL_MS)
          refreshEmbedding()
          showBuffer()
        }
      }
      try {
        AudioCapture(session.manifest.sampleRate).record { chunk, count ->
          session.buffer.append(chunk, 0, count)
          ring.append(chunk, 0, count)
        }
      } catch (e: CancellationException) {
        throw e
      } catch (e: SecurityException) {
        toast(getString(R.string.microphone_denied))
      } catch (e: RuntimeException) {
        toast(getString(R.string.microphone_error, e.message ?: e.toString()))
      } finally {
        embedding.cancel()
        session.buffer.endStream()
        withContext(NonCancellable + Dispatchers.IO) { session.persistBuffer() }
        recording = null
        recordButton.text = getString(R.string.start_listening)
        showBuffer()
      }
    }
  }

  private fun stopRecording() {
    recording?.cancel()
  }

  private suspend fun refreshEmbedding() {
    val patch = ring.latest()
    val (live, ranked) = withContext(Dispatchers.Default) {
      val live = session.embed(arrayOf(patch))[0]
      live to ClipLibrary.nearest(live, referenceEmbeddings(), SHOWN_MATCHES)
    }
    embeddingView.show(live)
    matches.text = if (ranked.isEmpty()) getString(R.string.no_matches)
    else ranked.joinToString("\n") { getString(R.string.match, it.label, it.similarity) }
  }

  /** Embeddings of the tagged clips under the current weights (recomputed when either changes). */
  private fun referenceEmbeddings(): List<Pair<String, FloatArray>> {
    val tagged = clips.all
    val key = session.weightsVersion to tagged.size
    if (key != referencesKey) {
      references = if (tagged.isEmpty()) emptyList() else {
        val embeddings = session.embed(tagged.map { it.waveform }.toTypedArray())
        tagged.mapIndexed { i, clip -> clip.label to embeddings[i] }
      }
      referencesKey = key
    }
    return references
  }

  private fun tagLatest() {
    val label = labelInput.text.toString().trim()
    if (recording == null || label.isEmpty()) {
      toast(getString(R.string.tag_needs_audio))
      return
    }
    val patch = ring.latest()
    lifecycleScope.launch {
      withContext(Dispatchers.IO) { clips.add(label, patch) }
      toast(getString(R.string.tagged, label, clips.all.size))
    }
  }

  private fun showTraining(info: WorkInfo) {
    when (info.state) {
      WorkInfo.State.RUNNING -> {
        val step = info.progress.getInt(TrainWorker.PROGRESS_STEP, 0)
        if (step > 0) {
          val line = getString(
            R.string.train_step, step, info.progress.getInt(TrainWorker.PROGRESS_STEPS, 0),
            info.progress.getFloat(TrainWorker.PROGRESS_LOSS, Float.NaN)
          )
          if (lossLines.lastOrNull() != line) lossLines.add(line)
          while (lossLines.size > SHOWN_LOSS_LINES) lossLines.removeAt(0)
          trainLog.text = lossLines.joinToString("\n")
        }
      }
      WorkInfo.State.SUCCEEDED -> trainLog.text = (lossLines + getString(
        R.string.train_done, info.outputData.getString(TrainWorker.RESULT_MESSAGE).orEmpty()
      )).joinToString("\n")
      WorkInfo.State.FAILED -> trainLog.text = getString(
        R.string.train_failed, info.outputData.getString(TrainWorker.RESULT_MESSAGE).orEmpty()
      )
      else -> Unit
    }
  }

  private fun showBuffer() {
    bufferInfo.text = getString(
      R.string.buffer_info, session.buffer.size, session.buffer.capacity, session.buffer.silentWindows
    )
  }

  /** Writes current minus bundled weights and offers the file to any app (mail, drive, ...). */
  private fun shareUpdate() {
    lifecycleScope.launch {
      val file = withContext(Dispatchers.IO) {
        session.writeDelta(File(File(cacheDir, SHARED_DIR).apply { mkdirs() }, Contract.STATE_DELTA))
      }
      val uri = FileProvider.getUriForFile(this@MainActivity, "$packageName.files", file)
      val send = Intent(Intent.ACTION_SEND)
        .setType("application/octet-stream")
        .putExtra(Intent.EXTRA_STREAM, uri)
        .addFlags(Intent.FLAG_GRANT_READ_URI_PERMISSION)
      startActivity(Intent.createChooser(send, getString(R.string.share_update)))
    }
  }

  private fun toast(message: String) = Toast.makeText(this, message, Toast.LENGTH_LONG).show()

  private companion object {
    const val EMBED_INTERVAL_MS = 500L
    const val SHOWN_MATCHES = 3
    const val SHOWN_LOSS_LINES = 12
    const val SHARED_DIR = "updates"
  }
}
