package com.example.audiossl.core

import org.junit.After
import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.Test
import java.io.File
import java.nio.file.Files

class SessionTest {
  private lateinit var dir: File
  private val manifest = Manifest.parse(fakeManifestJson())

  @Before
  fun setUp() {
    dir = Files.createTempDirectory("session-test").toFile()
  }

  @After
  fun tearDown() {
    dir.deleteRecursively()
  }

  private fun session(runner: FakeRunner = FakeRunner(), windows: Int = 4) =
    DeviceSession(OnDeviceModel(manifest, runner), dir, windows)

  @Test
  fun windowBufferCutsDropsSilenceAndKeepsTheNewest() {
    val buffer = WindowBuffer(4, 2)
    assertEquals(1, buffer.append(tone(6)))  // One window; two samples pending.
    assertEquals(1, buffer.append(FloatArray(2) { 0.5f }))  // They complete the second.
    buffer.append(FloatArray(3) { 0.5f })
    buffer.endStream()  // The recording stopped: the three pending samples go.
    assertEquals(0, buffer.append(FloatArray(4)))
    assertEquals(1, buffer.silentWindows)
    assertEquals(1, buffer.append(FloatArray(4) { 0.25f }))
    assertEquals(2, buffer.size)  // The oldest window went.
    val batch = buffer.batch(2, 1)
    assertArrayEquals(FloatArray(4) { 0.25f }, batch[0], 0f)
    try {
      buffer.batch(3, 0)
      fail("batch larger than the buffer")
    } catch (e: NotEnoughAudioException) {
      assertTrue(e.message!!.contains("a batch needs 3"))
    }
    val restored = WindowBuffer(4, 1)
    restored.load(buffer.toTensorFile(FakeSizes.SHA), "buffer")
    assertEquals(1, restored.size)
    assertArrayEquals(FloatArray(4) { 0.25f }, restored.batch(1, 0)[0], 0f)
  }

  @Test
  fun sampleRingKeepsTheLatestSamples() {
    val ring = SampleRing(3)
    ring.append(floatArrayOf(1f, 2f))
    assertArrayEquals(floatArrayOf(0f, 1f, 2f), ring.latest(), 0f)
    ring.append(floatArrayOf(3f, 4f, 5f, 6f), 1, 2)
    assertArrayEquals(floatArrayOf(2f, 4f, 5f), ring.latest(), 0f)
  }

  @Test
  fun trainsPersistsRestoresAndWritesTheDelta() {
    val first = session()
    assertEquals(Restored.BUNDLED, first.restored.source)
    try {
      first.train(1)
      fail("trained without audio")
    } catch (e: NotEnoughAudioException) {
      assertTrue(e.message!!.contains("record for longer"))
    }
    first.buffer.append(tone(FakeSizes.EXAMPLE * 3))
    val losses = first.train(2)
    assertEquals(2, losses.size)
    assertTrue(losses[1] < losses[0])
    assertEquals(4L, first.examples)
    first.persist()
    val saved = first.model.getWeights()

    val delta = TensorFile.read(first.writeDelta())
    assertEquals(TensorFileKind.DELTA, delta.kind)
    assertEquals(listOf("encoder/w", "head/b"), delta.tensors.map { it.name })
    assertEquals(4L, delta.examples)
    val expected = FloatArray(6) { saved.getValue("encoder/w")[it] - first.bundled.getValue("encoder/w")[it] }
    assertArrayEquals(expected, delta.tensors[0].data, 0f)

    val runner = FakeRunner()
    val second = session(runner)
    assertEquals(Restored.CURRENT, second.restored.source)
    assertEquals(4L, second.examples)
    assertEquals(3, second.buffer.size)
    for ((name, values) in saved) assertArrayEquals(values, second.model.getWeights().getValue(name), 0f)
    assertArrayEquals(floatArrayOf(1f, 2f, 3f, 4f, 5f, 6f), second.bundled.getValue("encoder/w"), 0f)
    second.close()
    assertTrue(runner.closed)
  }

  @Test
  fun embedsWithTheManifestsWidth() {
    val rows = session().embed(arrayOf(tone(FakeSizes.PATCH), FloatArray(FakeSizes.PATCH) { 1f }))
    assertEquals(2, rows.size)
    assertArrayEquals(floatArrayOf(1f, 1f, 1f), rows[1], 0f)
    try {
      session().embed(arrayOf(FloatArray(FakeSizes.PATCH + 1)))
      fail("wrong length")
    } catch (e: IllegalArgumentException) {
      assertTrue(e.message!!.contains("expected ${FakeSizes.PATCH}"))
    }
  }

  @Test
  fun aRunnerThatNeedsInputsRejectsInputlessSignatures() {
    try {
      OnDeviceModel(manifest, FakeRunner(requiresInputs = true))
      fail("accepted an input-less get_weights")
    } catch (e: UnsupportedModelException) {
      assertTrue(e.message!!.contains("get_weights"))
    }
    val withInput = Manifest.parse(fakeManifestJson(getWeightsInputs = "\"request\": {\"dtype\": \"int32\", \"shape\": []}"))
    val runner = FakeRunner(requiresInputs = true)
    assertEquals(3, OnDeviceModel(withInput, runner).getWeights().size)
  }

  @Test
  fun clipLibraryPersistsAndRanks() {
    val file = File(dir, "clips.odtf")
    val library = ClipLibrary(file, manifest)
    library.add("yes", FloatArray(FakeSizes.PATCH) { 1f })
    library.add("no", FloatArray(FakeSizes.PATCH) { -1f })
    val reloaded = ClipLibrary(file, manifest)
    assertEquals(listOf("yes", "no"), reloaded.all.map { it.label })
    val matches = ClipLibrary.nearest(floatArrayOf(1f, 0f), listOf("a" to floatArrayOf(0f, 1f), "b" to floatArrayOf(2f, 0.1f)), 1)
    assertEquals("b", matches.single().label)
    file.writeBytes(ByteArray(3))
    assertTrue(ClipLibrary(file, manifest).loadProblem!!.contains("truncated"))
  }
}
